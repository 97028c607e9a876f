/* util.c - allocation, buffers, hex, time, randomness, files and parsing. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "core.h"

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		fatal("out of memory (%zu bytes)", n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		fatal("out of memory (%zu x %zu bytes)", n, size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		fatal("out of memory (%zu bytes)", n);
	return q;
}

char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void why_write(char *why, size_t whylen, const char *fmt, ...)
{
	if (why && whylen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatal("bad format");
	char *p = xmalloc((size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

void buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void buf_reserve(struct buf *b, size_t extra)
{
	if (b->len + extra <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + extra)
		cap *= 2;
	b->data = xrealloc(b->data, cap);
	b->cap = cap;
}

void buf_append(struct buf *b, const void *p, size_t n)
{
	if (n == 0)
		return;
	buf_reserve(b, n);
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		fatal("bad format");
	buf_reserve(b, (size_t)n + 1);
	vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void buf_join(struct buf *b, const char *sep, const char *fmt, ...)
{
	if (b->len)
		buf_append(b, sep, strlen(sep));
	va_list ap;
	va_start(ap, fmt);
	buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void hex_encode(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int hex_decode(const char *in, uint8_t *out, size_t out_len)
{
	if (strlen(in) != 2 * out_len)
		return SS_EPARSE;
	for (size_t i = 0; i < out_len; i++) {
		int hi = hexval(in[2 * i]), lo = hexval(in[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return SS_EPARSE;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

uint64_t time_mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t time_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void time_utc_period(int64_t ms, bool by_month, char out[16])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	out[0] = '\0';
	if (gmtime_r(&t, &tm))
		strftime(out, 16, by_month ? "%Y-%m" : "%Y-%m-%d", &tm);
}

int64_t time_utc_period_end_ms(int64_t ms, bool by_month)
{
	if (!by_month)
		return (ms / 86400000 + 1) * 86400000;
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (!gmtime_r(&t, &tm))
		return 0;
	tm.tm_mday = 1;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	if (++tm.tm_mon == 12) {
		tm.tm_mon = 0;
		tm.tm_year++;
	}
	return (int64_t)timegm(&tm) * 1000;
}

void time_rfc3339(int64_t wall_ms, char out[32])
{
	time_t s = (time_t)(wall_ms / 1000);
	struct tm tm;
	char date[24];
	gmtime_r(&s, &tm);
	strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
	int ms = (int)(wall_ms % 1000);
	snprintf(out, 32, "%.19s.%03uZ", date, (unsigned)(ms < 0 ? 0 : ms) % 1000u);
}

/* Reads exactly n digits. */
static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

int time_parse_rfc3339(const char *s, int64_t *unix_s)
{
	static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y, mo, d, h, mi, sec;
	if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || s[10] != 'T' || !digits(s + 11, 2, &h) ||
	    s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec))
		return SS_EPARSE;
	const char *p = s + 19;
	if (*p == '.') {
		p++;
		size_t n = strspn(p, "0123456789");
		if (n == 0 || n > 9)
			return SS_EPARSE;
		p += n;
	}
	if (strcmp(p, "Z") != 0)
		return SS_EPARSE;
	if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
		return SS_EPARSE;
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo == 2 && d == 29 && !leap)
		return SS_EPARSE;
	struct tm tm;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	*unix_s = (int64_t)timegm(&tm);
	return 0;
}

void rand_bytes(void *buf, size_t n)
{
	if (n > INT_MAX || RAND_bytes(buf, (int)n) != 1)
		fatal("RAND_bytes failed");
}

uint32_t rand_below(uint32_t bound)
{
	uint32_t x, limit = UINT32_MAX - UINT32_MAX % bound;
	do
		rand_bytes(&x, sizeof x);
	while (x >= limit);
	return x % bound;
}

void sha256(const void *data, size_t n, uint8_t out[SHA256_LEN])
{
	unsigned int len = SHA256_LEN;
	if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1)
		fatal("EVP_Digest failed");
}

bool ct_equal(const void *a, const void *b, size_t n)
{
	return CRYPTO_memcmp(a, b, n) == 0;
}

int fd_write_all(int fd, const void *data, size_t n)
{
	const uint8_t *p = data;
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return SS_EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int fd_read(int fd, void *buf, size_t n, size_t *got)
{
	for (;;) {
		ssize_t r = read(fd, buf, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return SS_EIO;
		*got = (size_t)r;
		return 0;
	}
}

int file_read(const char *path, size_t max, char **out, size_t *out_len)
{
	int rc = 0;
	char *data = NULL;
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT ? SS_ENOTFOUND : SS_EIO;
		goto out;
	}
	data = xmalloc(max + 1);
	for (;;) {
		size_t r = 0;
		if ((rc = fd_read(fd, data + len, max + 1 - len, &r)) != 0)
			goto out;
		if (r == 0)
			break;
		len += r;
		if (len > max) {
			rc = SS_ETOOBIG;
			goto out;
		}
	}
	data[len] = '\0';
	*out = data;
	data = NULL;
	if (out_len)
		*out_len = len;
out:
	free(data);
	if (fd >= 0)
		close(fd);
	return rc;
}

int file_write_atomic(const char *path, const void *data, size_t n, unsigned mode)
{
	int rc = 0;
	char *tmp = xasprintf("%s.tmp.%ld", path, (long)getpid());
	char *dir = xstrdup(path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		rc = SS_EIO;
		goto out;
	}
	if (fchmod(fd, mode) != 0) {
		rc = SS_EIO;
		goto out;
	}
	if ((rc = fd_write_all(fd, data, n)) != 0)
		goto out;
	if (fsync(fd) != 0 || close(fd) != 0) {
		fd = -1;
		rc = SS_EIO;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0) {
		rc = SS_EIO;
		goto out;
	}
	char *slash = strrchr(dir, '/');
	if (slash) {
		*slash = '\0';
		int dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			(void)fsync(dfd);
			close(dfd);
		}
	}
out:
	if (fd >= 0)
		close(fd);
	if (rc)
		unlink(tmp);
	free(tmp);
	free(dir);
	return rc;
}

int dir_ensure(const char *path, unsigned mode)
{
	int rc = 0;
	char *copy = xstrdup(path);
	for (char *p = copy + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(copy, 0755) != 0 && errno != EEXIST) {
			rc = SS_EIO;
			goto out;
		}
		*p = '/';
	}
	if (mkdir(copy, mode) != 0 && errno != EEXIST) {
		rc = SS_EIO;
		goto out;
	}
	struct stat st;
	if (stat(copy, &st) != 0 || !S_ISDIR(st.st_mode)) {
		rc = SS_EIO;
		goto out;
	}
out:
	free(copy);
	return rc;
}

int addr_split(const char *addr, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon;
	const char *hstart = addr;
	size_t hlen;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return SS_EPARSE;
		hstart = addr + 1;
		hlen = (size_t)(close - hstart);
		colon = close + 1;
	} else {
		colon = strrchr(addr, ':');
		if (!colon)
			return SS_EPARSE;
		hlen = (size_t)(colon - addr);
	}
	if (hlen == 0 || hlen >= hostlen)
		return SS_EPARSE;
	const char *ps = colon + 1;
	size_t plen = strlen(ps);
	if (plen == 0 || plen > 5 || strspn(ps, "0123456789") != plen)
		return SS_EPARSE;
	long p = strtol(ps, NULL, 10);
	if (p > 65535)
		return SS_EPARSE;
	memcpy(host, hstart, hlen);
	host[hlen] = '\0';
	*port = (uint16_t)p;
	return 0;
}

struct unit {
	const char *name;
	uint64_t mul;
	bool nocase;
};

/* Parses digits followed by one of the units; the product must fit in 64 bits. */
static int parse_with_unit(const char *s, const struct unit *units, size_t n, uint64_t *out)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)*s))
		return SS_EPARSE;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return SS_EPARSE;
	for (size_t i = 0; i < n; i++) {
		if ((units[i].nocase ? strcasecmp(end, units[i].name) : strcmp(end, units[i].name)) != 0)
			continue;
		if (v > UINT64_MAX / units[i].mul)
			return SS_EPARSE;
		*out = v * units[i].mul;
		return 0;
	}
	return SS_EPARSE;
}

void format_size(uint64_t v, char out[32])
{
	static const char units[] = "KMGT";
	int u = 0;
	while (u < 4 && v >= (1ull << (10 * (u + 1))))
		u++;
	if (u == 0) {
		snprintf(out, 32, "%llu", (unsigned long long)v);
		return;
	}
	/* Prefer the largest unit that divides v exactly. */
	for (int e = u; e > 0; e--) {
		if (v % (1ull << (10 * e)) == 0) {
			snprintf(out, 32, "%llu%c", (unsigned long long)(v >> (10 * e)), units[e - 1]);
			return;
		}
	}
	snprintf(out, 32, "%.1f%c", (double)v / (double)(1ull << (10 * u)), units[u - 1]);
}

void format_seconds(double s, char out[32])
{
	if (!(s >= 0))
		s = 0;
	if (s < 1)
		snprintf(out, 32, "%.0fms", s * 1000.0);
	else if (s < 60)
		snprintf(out, 32, "%.1fs", s);
	else if (s < 3600)
		snprintf(out, 32, "%.1fm", s / 60.0);
	else if (s < 86400)
		snprintf(out, 32, "%.1fh", s / 3600.0);
	else
		snprintf(out, 32, "%.1fd", s / 86400.0);
}

void format_amount(double v, char out[32])
{
	if (!(v > 0) || v > 1e15) {
		snprintf(out, 32, "%.2f", v > 1e15 ? v : 0.0);
		return;
	}
	int decimals = 2;
	for (double x = v; x < 1.0 && decimals < 14; x *= 10.0)
		decimals++;
	snprintf(out, 32, "%.*f", decimals, v);
}

void format_duration_ms(uint64_t ms, char out[32])
{
	static const struct {
		uint64_t ms;
		const char *unit;
	} units[] = {{86400000, "d"}, {3600000, "h"}, {60000, "m"}, {1000, "s"}};
	for (size_t i = 0; i < ARRAY_LEN(units); i++) {
		if (ms && ms % units[i].ms == 0) {
			snprintf(out, 32, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
			return;
		}
	}
	snprintf(out, 32, "%llums", (unsigned long long)ms);
}

void format_utc_ms(int64_t ms, char out[32])
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	if (ms < 0 || !gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(out, 32, "%lld ms", (long long)ms);
}

int parse_size(const char *s, uint64_t *out)
{
	static const struct unit units[] = {
		{"", 1, false},          {"B", 1, false},
		{"k", 1ull << 10, true}, {"KiB", 1ull << 10, true}, {"KB", 1ull << 10, true},
		{"M", 1ull << 20, true}, {"MiB", 1ull << 20, true}, {"MB", 1ull << 20, true},
		{"G", 1ull << 30, true}, {"GiB", 1ull << 30, true}, {"GB", 1ull << 30, true},
		{"T", 1ull << 40, true}, {"TiB", 1ull << 40, true}, {"TB", 1ull << 40, true},
	};
	return parse_with_unit(s, units, ARRAY_LEN(units), out);
}

int parse_duration_ms(const char *s, uint64_t *out)
{
	static const struct unit units[] = {
		{"ms", 1, false}, {"s", 1000, false}, {"", 1000, false},
		{"m", 60000, false}, {"h", 3600000, false}, {"d", 86400000, false},
	};
	return parse_with_unit(s, units, ARRAY_LEN(units), out);
}

bool ident_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || !isalnum((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return false;
	}
	return true;
}

bool label_value_valid(const char *s)
{
	size_t n = strlen(s);
	if (n > 127)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
			return false;
	}
	return true;
}

uint64_t hash_fnv1a(const void *data, size_t n, uint64_t seed)
{
	const uint8_t *p = data;
	uint64_t h = seed ? seed : 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

uint64_t hash_str(const char *s)
{
	return hash_fnv1a(s, strlen(s), 0);
}

static int remove_at(int dfd, const char *name, int depth)
{
	int rc = 0;
	if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
		return 0;
	if ((errno != EISDIR && errno != EPERM) || depth > 64)
		return SS_EIO;
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return SS_EIO;
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
		    remove_at(dirfd(d), de->d_name, depth + 1) != 0)
			rc = SS_EIO;
	}
	closedir(d);
	if (unlinkat(dfd, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
		rc = SS_EIO;
	return rc;
}

int dir_remove_tree(const char *path)
{
	return remove_at(AT_FDCWD, path, 0);
}

void failpoint(const char *name)
{
	static const char *armed;
	static bool read;
	if (!read) {
		armed = getenv("SEESWARM_FAILPOINT");
		read = true;
	}
	if (armed && strcmp(armed, name) == 0) {
		log_error("failpoint %s: killing this process (SEESWARM_FAILPOINT)", name);
		raise(SIGKILL);
	}
}
