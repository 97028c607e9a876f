/*
 * sysinfo.c - machine capabilities and load from /proc, statvfs and
 * gethostname. Every reader bounds what it reads; a missing or unreadable
 * source yields zeros so that an agent in a minimal environment still starts.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "agent/sysinfo.h"
#include "core/core.h"

/* Lines longer than this are ignored by the parsers. */
#define SYSINFO_MAX_LINE (64u * 1024u)
/* At most this many features are reported. */
#define SYSINFO_MAX_FEATURES 64
/* How much of a /proc file is read; only the first lines matter. */
#define SYSINFO_READ_MAX (256u * 1024u)

/*
 * The CPU flags seeswarm reports: security- and crypto-relevant ones only.
 * The list is sorted by strcmp, so reporting in list order gives a sorted,
 * duplicate-free result.
 */
static const char *const feature_allow[] = {
	"adx",       "aes",      "avx",       "avx2",       "avx512bw",  "avx512f",
	"avx512vl",  "bmi2",     "hypervisor", "pclmulqdq", "rdrand",    "rdseed",
	"sev",       "sev_es",   "sev_snp",   "sgx",        "sgx_lc",    "sha_ni",
	"smap",      "smep",     "sse4_1",    "sse4_2",     "tdx_guest", "vaes",
	"vpclmulqdq",
};

_Static_assert(sizeof feature_allow / sizeof feature_allow[0] <= SYSINFO_MAX_FEATURES,
	       "allow-list larger than the feature bound");

/*
 * Reads up to max bytes of path into a NUL-terminated buffer (caller frees).
 * Unlike file_read, a longer file is not an error: the text is cut after its
 * last complete line. Returns SS_ENOTFOUND or SS_EIO when it cannot read.
 */
static int read_prefix(const char *path, size_t max, char **out)
{
	int rc = 0;
	size_t len = 0;
	char *data = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*out = NULL;
	if (fd < 0) {
		rc = errno == ENOENT ? SS_ENOTFOUND : SS_EIO;
		goto out;
	}
	data = xmalloc(max + 1);
	while (len < max) {
		ssize_t r = read(fd, data + len, max - len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = SS_EIO;
			goto out;
		}
		if (r == 0)
			break;
		len += (size_t)r;
	}
	if (len == max) {
		char *nl = memrchr(data, '\n', len);
		len = nl ? (size_t)(nl - data) + 1 : 0;
	}
	data[len] = '\0';
	*out = data;
	data = NULL;
out:
	free(data);
	if (fd >= 0)
		close(fd);
	return rc;
}

/*
 * Returns the next line of *pos (without its newline) through line/len and
 * advances *pos; returns false at the end of the text.
 */
static bool next_line(const char **pos, const char **line, size_t *len)
{
	const char *p = *pos;
	if (!*p)
		return false;
	const char *nl = strchr(p, '\n');
	size_t n = nl ? (size_t)(nl - p) : strlen(p);
	*line = p;
	*len = n;
	*pos = nl ? nl + 1 : p + n;
	return true;
}

/* True when line (len bytes) is "key<spaces/tabs>:..."; sets *value after the colon. */
static bool line_key(const char *line, size_t len, const char *key, const char **value,
		     size_t *vlen)
{
	size_t k = strlen(key);
	if (len < k + 1 || memcmp(line, key, k) != 0)
		return false;
	size_t i = k;
	while (i < len && (line[i] == ' ' || line[i] == '\t'))
		i++;
	if (i >= len || line[i] != ':')
		return false;
	*value = line + i + 1;
	*vlen = len - i - 1;
	return true;
}

int sysinfo_parse_cpuinfo(const char *text, char ***features, size_t *n)
{
	bool seen[sizeof feature_allow / sizeof feature_allow[0]] = {false};
	const char *pos = text, *line, *val = NULL;
	size_t len, vlen = 0, count = 0;

	*features = NULL;
	*n = 0;
	if (!text)
		return SS_EINVAL;
	while (next_line(&pos, &line, &len)) {
		if (len > SYSINFO_MAX_LINE)
			continue;
		if (line_key(line, len, "flags", &val, &vlen))
			break;
		val = NULL;
	}
	if (!val)
		return 0;
	size_t i = 0;
	while (i < vlen) {
		while (i < vlen && isspace((unsigned char)val[i]))
			i++;
		size_t start = i;
		while (i < vlen && !isspace((unsigned char)val[i]))
			i++;
		size_t tlen = i - start;
		if (tlen == 0)
			continue;
		for (size_t j = 0; j < ARRAY_LEN(feature_allow); j++) {
			if (strlen(feature_allow[j]) == tlen &&
			    !memcmp(feature_allow[j], val + start, tlen)) {
				seen[j] = true;
				break;
			}
		}
	}
	for (size_t j = 0; j < ARRAY_LEN(feature_allow); j++)
		count += seen[j];
	if (count == 0)
		return 0;
	char **list = xcalloc(count, sizeof *list);
	size_t k = 0;
	for (size_t j = 0; j < ARRAY_LEN(feature_allow) && k < SYSINFO_MAX_FEATURES; j++)
		if (seen[j])
			list[k++] = xstrdup(feature_allow[j]);
	*features = list;
	*n = k;
	return 0;
}

/* Parses "<digits> kB" (or a bare number of bytes) into bytes; false on error. */
static bool parse_kb(const char *v, size_t vlen, uint64_t *out)
{
	size_t i = 0;
	uint64_t x = 0;
	while (i < vlen && (v[i] == ' ' || v[i] == '\t'))
		i++;
	if (i >= vlen || !isdigit((unsigned char)v[i]))
		return false;
	for (; i < vlen && isdigit((unsigned char)v[i]); i++) {
		unsigned d = (unsigned)(v[i] - '0');
		if (x > (UINT64_MAX - d) / 10)
			return false;
		x = x * 10 + d;
	}
	while (i < vlen && v[i] == ' ')
		i++;
	if (vlen - i >= 2 && (v[i] == 'k' || v[i] == 'K') && v[i + 1] == 'B') {
		if (x > UINT64_MAX / 1024)
			return false;
		x *= 1024;
	}
	*out = x;
	return true;
}

/* Reads MemTotal and MemAvailable in bytes; zeros when unavailable. */
static void read_meminfo(uint64_t *total, uint64_t *avail)
{
	char *text = NULL;
	const char *pos, *line, *val;
	size_t len, vlen;

	*total = 0;
	*avail = 0;
	if (read_prefix("/proc/meminfo", SYSINFO_READ_MAX, &text) != 0)
		return;
	pos = text;
	while (next_line(&pos, &line, &len)) {
		if (len > SYSINFO_MAX_LINE)
			continue;
		if (line_key(line, len, "MemTotal", &val, &vlen)) {
			if (!parse_kb(val, vlen, total))
				*total = 0;
		} else if (line_key(line, len, "MemAvailable", &val, &vlen)) {
			if (!parse_kb(val, vlen, avail))
				*avail = 0;
		}
	}
	free(text);
}

int sysinfo_caps(const char *data_dir, struct sysinfo_caps *caps)
{
	char *cpuinfo = NULL;
	char host[256];
	uint64_t avail;
	struct statvfs vfs;

	memset(caps, 0, sizeof *caps);
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	caps->cpu_cores = cores > 0 ? (uint32_t)(cores > 65536 ? 65536 : cores) : 0;
	read_meminfo(&caps->memory_bytes, &avail);
	if (data_dir && statvfs(data_dir, &vfs) == 0) {
		uint64_t blocks = vfs.f_blocks, frsize = vfs.f_frsize;
		caps->disk_bytes = frsize && blocks > UINT64_MAX / frsize ? UINT64_MAX
									   : blocks * frsize;
	}
	if (gethostname(host, sizeof host) == 0) {
		host[sizeof host - 1] = '\0';
		size_t hl = strnlen(host, sizeof caps->hostname - 1);
		memcpy(caps->hostname, host, hl);
		caps->hostname[hl] = '\0';
	}
	if (read_prefix("/proc/cpuinfo", SYSINFO_READ_MAX, &cpuinfo) == 0) {
		int rc = sysinfo_parse_cpuinfo(cpuinfo, &caps->features, &caps->n_features);
		if (rc)
			log_warn("cannot parse /proc/cpuinfo: %s", ss_strerror(rc));
	}
	free(cpuinfo);
	return 0;
}

void sysinfo_caps_free(struct sysinfo_caps *caps)
{
	if (!caps)
		return;
	for (size_t i = 0; i < caps->n_features; i++)
		free(caps->features[i]);
	free(caps->features);
	caps->features = NULL;
	caps->n_features = 0;
}

/*
 * Reads the aggregate "cpu" line of /proc/stat. total counts user, nice,
 * system, idle, iowait, irq, softirq and steal (guest time is already part of
 * user); idle counts idle and iowait. Returns false when unavailable.
 */
static bool read_cpu_times(uint64_t *total, uint64_t *idle)
{
	char *text = NULL;
	const char *pos, *line;
	size_t len;
	bool ok = false;

	if (read_prefix("/proc/stat", SYSINFO_READ_MAX, &text) != 0)
		return false;
	pos = text;
	if (!next_line(&pos, &line, &len) || len > SYSINFO_MAX_LINE || len < 4 ||
	    memcmp(line, "cpu ", 4) != 0)
		goto out;
	uint64_t f[8] = {0};
	size_t i = 3, nf = 0;
	while (nf < ARRAY_LEN(f)) {
		while (i < len && line[i] == ' ')
			i++;
		if (i >= len || !isdigit((unsigned char)line[i]))
			break;
		uint64_t x = 0;
		for (; i < len && isdigit((unsigned char)line[i]); i++) {
			unsigned d = (unsigned)(line[i] - '0');
			if (x > (UINT64_MAX - d) / 10)
				goto out;
			x = x * 10 + d;
		}
		f[nf++] = x;
	}
	if (nf < 4)
		goto out;
	uint64_t t = 0;
	for (size_t k = 0; k < nf; k++) {
		if (t > UINT64_MAX - f[k])
			goto out;
		t += f[k];
	}
	*total = t;
	*idle = f[3] + f[4]; /* both <= t, so no overflow */
	ok = true;
out:
	free(text);
	return ok;
}

/* Reads the 1-minute load average x 100 from /proc/loadavg without using locale. */
static uint32_t read_load1_centi(void)
{
	char *text = NULL;
	uint64_t whole = 0, frac = 0;
	if (read_prefix("/proc/loadavg", 4096, &text) != 0)
		return 0;
	const char *p = text;
	while (isdigit((unsigned char)*p) && whole < 100000000)
		whole = whole * 10 + (uint64_t)(*p++ - '0');
	if (*p == '.') {
		p++;
		for (int d = 0; d < 2; d++) {
			frac *= 10;
			if (isdigit((unsigned char)*p))
				frac += (uint64_t)(*p++ - '0');
		}
		if (isdigit((unsigned char)*p) && *p >= '5')
			frac++;
	} else {
		frac = 0;
	}
	free(text);
	uint64_t v = whole * 100 + frac;
	return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

int sysinfo_load(struct sysinfo_load_state *st, struct sysinfo_load *out)
{
	uint64_t total = 0, idle = 0, mem_total, mem_avail;

	memset(out, 0, sizeof *out);
	if (read_cpu_times(&total, &idle)) {
		/* The first sample (prev 0) reports the busy share since boot. */
		if (total > st->prev_total && idle >= st->prev_idle) {
			uint64_t dt = total - st->prev_total, di = idle - st->prev_idle;
			uint64_t busy = di > dt ? 0 : dt - di;
			uint64_t pm = busy <= UINT64_MAX / 1000 ? busy * 1000 / dt
							       : busy / (dt / 1000);
			out->cpu_permille = (uint32_t)(pm > 1000 ? 1000 : pm);
		}
		st->prev_total = total;
		st->prev_idle = idle;
	}
	read_meminfo(&mem_total, &mem_avail);
	out->memory_used_bytes = mem_total > mem_avail ? mem_total - mem_avail : 0;
	out->load1_centi = read_load1_centi();
	return 0;
}
