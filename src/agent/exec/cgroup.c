/*
 * cgroup.c - per-task cgroups on v1 (memory, pids, cpu, cpuacct hierarchies)
 * or v2 (unified), chosen at run time.
 *
 * A task cgroup is created below the cgroups this process is in (read from
 * /proc/self/cgroup), so a nested agent stays inside the limits it was
 * given. On v1 the counters can be reset, so the sandbox reuses cgroups
 * between tasks; exec_cgroup_begin() resets peak memory and snapshots CPU
 * time and the OOM and pids-limit event counters, which cannot be reset.
 * A reused cgroup skips what it already has: limits equal to the ones it
 * holds are not written again, and the counters exec_cgroup_usage() read
 * at the end of the last task are the next task's baseline (an empty cgroup
 * does not move them; exec_cgroup_kill() discards them).
 *
 * The files a run touches are opened once per cgroup and kept (cgroup.procs
 * of each hierarchy for joining, and the counters, which are re-read with
 * pread at offset 0: a seq_file regenerates its text for a read from 0).
 * cgroup.procs is the exception for reading: a v1 pidlist is cached per open
 * file for a second, so membership is read through pids.current first and
 * through a fresh open of cgroup.procs only when that is not zero.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/exec/exec.h"

#define CG_ROOT "/sys/fs/cgroup"
#define CG_MAX_DIRS 4

enum { C_MEM = 0, C_PIDS, C_CPU, C_CPUACCT, C_COUNT };

/* The counter files a run reads, kept open per cgroup (see cg_fd). */
enum { F_PEAK = 0, F_OOM, F_PIDS_EV, F_CPU, F_PIDS_CUR, F_COUNT };

struct cg_file {
	const char *v1, *v2; /* file name per mode; NULL: not on that mode */
	int ctrl;
	int flags;           /* on v1, besides O_CLOEXEC; v2 opens every one O_RDONLY */
};

static const struct cg_file cg_files[F_COUNT] = {
	/* v1 resets the peak by writing 0 into it, so it is opened for both. */
	[F_PEAK] = {"memory.max_usage_in_bytes", "memory.peak", C_MEM, O_RDWR},
	[F_OOM] = {"memory.oom_control", "memory.events", C_MEM, O_RDONLY},
	[F_PIDS_EV] = {"pids.events", "pids.events", C_PIDS, O_RDONLY},
	[F_CPU] = {"cpuacct.usage", "cpu.stat", C_CPUACCT, O_RDONLY},
	[F_PIDS_CUR] = {"pids.current", "pids.current", C_PIDS, O_RDONLY},
};

struct exec_cgroup {
	enum exec_cg_mode mode;
	char *dir[C_COUNT]; /* per controller; on v2 all point at one path */
	int procs_fd[C_COUNT]; /* cgroup.procs, O_WRONLY, of each distinct hierarchy, or -1 */
	int fd[F_COUNT];       /* the counter files, opened on first use, or -1 */
	uint64_t oom0, pidsmax0, cpu0;
	bool base_valid;              /* oom0, pidsmax0 and cpu0 hold the counters now */
	bool limits_valid;            /* limits holds what the files hold */
	struct exec_resources limits; /* memory_bytes, pids and cpu_millicores only */
};

/* Returns -errno for a failed call, never 0 (-EIO if errno was not set). */
static int neg_errno(void)
{
	return errno ? -errno : -EIO;
}

static int write_str(const char *dir, const char *file, const char *val)
{
	char path[512];
	int rc = 0;
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return neg_errno();
	size_t n = strlen(val);
	if (write(fd, val, n) != (ssize_t)n)
		rc = neg_errno();
	close(fd);
	return rc;
}

/*
 * Reads up to outlen - 1 bytes of dir/file into out (outlen > 0) with one
 * read(2), so a longer file comes back truncated. out is always a string,
 * empty on failure. Returns 0 or a negative errno, never 0 on failure.
 */
static int read_small(const char *dir, const char *file, char *out, size_t outlen)
{
	char path[512];
	out[0] = '\0';
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return neg_errno();
	ssize_t n = read(fd, out, outlen - 1);
	int rc = n < 0 ? neg_errno() : 0;
	close(fd);
	if (rc)
		return rc;
	out[n] = '\0';
	return 0;
}

/*
 * Returns the counter file's descriptor, opening it on first use; -1 when
 * the file does not exist on this mode or cannot be opened (then the next
 * call tries again). The descriptor belongs to cg.
 */
static int cg_fd(struct exec_cgroup *cg, int which)
{
	const struct cg_file *f = &cg_files[which];
	const char *name = cg->mode == EXEC_CG_V2 ? f->v2 : f->v1;
	if (cg->fd[which] >= 0 || !name || !cg->dir[f->ctrl])
		return cg->fd[which];
	char path[600];
	snprintf(path, sizeof(path), "%s/%s", cg->dir[f->ctrl], name);
	cg->fd[which] = open(path, (cg->mode == EXEC_CG_V2 ? O_RDONLY : f->flags) | O_CLOEXEC);
	return cg->fd[which];
}

/*
 * Reads the whole counter file (up to outlen - 1 bytes) into out from
 * offset 0. out is always a string, empty on failure. Returns 0 or a
 * negative errno; a failed read closes the descriptor so the next call
 * reopens it.
 */
static int cg_read(struct exec_cgroup *cg, int which, char *out, size_t outlen)
{
	out[0] = '\0';
	int fd = cg_fd(cg, which);
	if (fd < 0)
		return -ENOENT;
	ssize_t n = pread(fd, out, outlen - 1, 0);
	if (n < 0) {
		int rc = neg_errno();
		close(fd);
		cg->fd[which] = -1;
		return rc;
	}
	out[n] = '\0';
	return 0;
}

static uint64_t read_u64(struct exec_cgroup *cg, int which)
{
	char b[64];
	if (cg_read(cg, which, b, sizeof(b)))
		return 0;
	return strtoull(b, NULL, 10);
}

/* Returns the value of "key N" in a flat keyed counter file, or 0. */
static uint64_t read_keyed(struct exec_cgroup *cg, int which, const char *key)
{
	char b[2048];
	size_t kl = strlen(key);
	if (cg_read(cg, which, b, sizeof(b)))
		return 0;
	for (char *line = b; line && *line;) {
		char *nl = strchr(line, '\n');
		if (!strncmp(line, key, kl) && line[kl] == ' ')
			return strtoull(line + kl + 1, NULL, 10);
		line = nl ? nl + 1 : NULL;
	}
	return 0;
}

/*
 * Finds this process's cgroup path for a v1 controller (or v2 when ctrl is
 * ""), and the mount point of that hierarchy. Returns 0 or SS_ENOTFOUND.
 */
static int self_cgroup(const char *ctrl, char *mnt, size_t mntlen, char *path, size_t pathlen)
{
	char *data = NULL;
	size_t len = 0;
	int rc = SS_ENOTFOUND;

	if (file_read("/proc/self/cgroup", 65536, &data, &len))
		return SS_ENOTFOUND;
	for (char *line = data; line && *line;) {
		char *nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c2) {
			*c2 = '\0';
			const char *ctrls = c1 + 1;
			bool match = false;
			if (!ctrl[0]) {
				match = !strcmp(line, "0") && !ctrls[0];
			} else {
				char tmp[256];
				snprintf(tmp, sizeof(tmp), "%s", ctrls);
				char *save = NULL;
				for (char *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save))
					if (!strcmp(t, ctrl))
						match = true;
			}
			if (match) {
				struct stat st;
				if (!ctrl[0]) {
					snprintf(mnt, mntlen, CG_ROOT "/unified");
					if (stat(CG_ROOT "/cgroup.controllers", &st) == 0)
						snprintf(mnt, mntlen, CG_ROOT);
				} else {
					snprintf(mnt, mntlen, CG_ROOT "/%s", ctrls);
					if (stat(mnt, &st) < 0)
						snprintf(mnt, mntlen, CG_ROOT "/%s", ctrl);
				}
				snprintf(path, pathlen, "%s", strcmp(c2 + 1, "/") ? c2 + 1 : "");
				rc = 0;
				break;
			}
		}
		line = nl ? nl + 1 : NULL;
	}
	free(data);
	return rc;
}

static bool has_word(const char *list, const char *w)
{
	size_t n = strlen(w);
	for (const char *p = strstr(list, w); p; p = strstr(p + 1, w))
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\n' || !p[n]))
			return true;
	return false;
}

enum exec_cg_mode exec_cgroup_detect(void)
{
	char mnt[256], path[512], dir[800], ctl[512];

	if (!self_cgroup("", mnt, sizeof(mnt), path, sizeof(path))) {
		snprintf(dir, sizeof(dir), "%s%s", mnt, path);
		if (!read_small(dir, "cgroup.controllers", ctl, sizeof(ctl)) &&
		    has_word(ctl, "memory") && has_word(ctl, "pids"))
			return EXEC_CG_V2;
	}
	struct stat st;
	if (!self_cgroup("memory", mnt, sizeof(mnt), path, sizeof(path)) &&
	    stat(mnt, &st) == 0 &&
	    !self_cgroup("pids", mnt, sizeof(mnt), path, sizeof(path)) && stat(mnt, &st) == 0)
		return EXEC_CG_V1;
	return EXEC_CG_NONE;
}

int exec_cgroup_create(struct exec_cgroup **out, enum exec_cg_mode mode, const char *name)
{
	static const char *const ctrls[C_COUNT] = {"memory", "pids", "cpu", "cpuacct"};
	struct exec_cgroup *cg = xcalloc(1, sizeof(*cg));
	char mnt[256], path[512];
	int rc = 0;

	*out = NULL;
	cg->mode = mode;
	for (int i = 0; i < C_COUNT; i++)
		cg->procs_fd[i] = -1;
	for (int i = 0; i < F_COUNT; i++)
		cg->fd[i] = -1;
	if (!ident_valid(name)) {
		rc = SS_EINVAL;
		goto out;
	}
	if (mode == EXEC_CG_V2) {
		if ((rc = self_cgroup("", mnt, sizeof(mnt), path, sizeof(path))))
			goto out;
		char *parent = xasprintf("%s%s", mnt, path);
		/* Delegation: the parent must pass the controllers down. */
		write_str(parent, "cgroup.subtree_control", "+memory +pids +cpu");
		cg->dir[C_MEM] = xasprintf("%s/%s", parent, name);
		free(parent);
		if (mkdir(cg->dir[C_MEM], 0755) < 0 && errno != EEXIST) {
			rc = SS_EIO;
			goto out;
		}
		for (int i = 1; i < C_COUNT; i++)
			cg->dir[i] = xstrdup(cg->dir[C_MEM]);
		goto out;
	}
	if (mode != EXEC_CG_V1) {
		rc = SS_ENOSYS;
		goto out;
	}
	for (int i = 0; i < C_COUNT; i++) {
		if (self_cgroup(ctrls[i], mnt, sizeof(mnt), path, sizeof(path))) {
			if (i <= C_PIDS) {
				rc = SS_ENOSYS;
				goto out;
			}
			continue; /* cpu and cpuacct are optional */
		}
		char *d = xasprintf("%s%s/%s", mnt, path, name);
		/* cpu and cpuacct may share one hierarchy ("cpu,cpuacct"). */
		for (int j = 0; j < i; j++)
			if (cg->dir[j] && !strcmp(cg->dir[j], d)) {
				cg->dir[i] = d;
				d = NULL;
				break;
			}
		if (!d)
			continue;
		if (mkdir(d, 0755) < 0 && errno != EEXIST) {
			log_warn("exec: cannot create cgroup %s: %s", d, strerror(errno));
			free(d);
			rc = i <= C_PIDS ? SS_EIO : 0;
			if (rc)
				goto out;
			continue;
		}
		cg->dir[i] = d;
	}
out:
	if (rc)
		exec_cgroup_destroy(cg);
	else
		*out = cg;
	return rc;
}

int exec_cgroup_set_limits(struct exec_cgroup *cg, const struct exec_resources *r)
{
	char v[64];
	int rc;

	if (cg->limits_valid && cg->limits.memory_bytes == r->memory_bytes &&
	    cg->limits.pids == r->pids && cg->limits.cpu_millicores == r->cpu_millicores)
		return 0;
	cg->limits_valid = false;
	snprintf(v, sizeof(v), "%" PRIu64, r->memory_bytes);
	if (cg->mode == EXEC_CG_V2) {
		if (write_str(cg->dir[C_MEM], "memory.max", v) != 0)
			return SS_EIO;
		write_str(cg->dir[C_MEM], "memory.swap.max", "0");
		snprintf(v, sizeof(v), "%u", r->pids);
		if (write_str(cg->dir[C_PIDS], "pids.max", v) != 0)
			return SS_EIO;
		if (r->cpu_millicores)
			snprintf(v, sizeof(v), "%u 100000", r->cpu_millicores * 100);
		else
			snprintf(v, sizeof(v), "max 100000");
		write_str(cg->dir[C_CPU], "cpu.max", v);
		goto done;
	}
	/* memsw must stay >= the memory limit at every step, so lift it first. */
	write_str(cg->dir[C_MEM], "memory.memsw.limit_in_bytes", "-1");
	if ((rc = write_str(cg->dir[C_MEM], "memory.limit_in_bytes", v))) {
		log_warn("exec: memory.limit_in_bytes: %s", strerror(-rc));
		return SS_EIO;
	}
	write_str(cg->dir[C_MEM], "memory.memsw.limit_in_bytes", v);
	snprintf(v, sizeof(v), "%u", r->pids);
	if (write_str(cg->dir[C_PIDS], "pids.max", v))
		return SS_EIO;
	if (cg->dir[C_CPU]) {
		write_str(cg->dir[C_CPU], "cpu.cfs_period_us", "100000");
		if (r->cpu_millicores)
			snprintf(v, sizeof(v), "%u", r->cpu_millicores * 100);
		else
			snprintf(v, sizeof(v), "-1");
		if (write_str(cg->dir[C_CPU], "cpu.cfs_quota_us", v))
			return SS_EIO;
	}
done:
	cg->limits = *r;
	cg->limits_valid = true;
	return 0;
}

static uint64_t cpu_usage_ns(struct exec_cgroup *cg)
{
	if (cg->mode == EXEC_CG_V2)
		return read_keyed(cg, F_CPU, "usage_usec") * 1000;
	return read_u64(cg, F_CPU);
}

int exec_cgroup_begin(struct exec_cgroup *cg)
{
	if (cg->mode == EXEC_CG_V1) {
		int fd = cg_fd(cg, F_PEAK);
		if (fd < 0 || pwrite(fd, "0", 1, 0) != 1)
			log_warn("exec: cannot reset memory.max_usage_in_bytes: %s", strerror(errno));
		if (cg->base_valid) {
			cg->base_valid = false;
			return 0;
		}
	}
	cg->oom0 = read_keyed(cg, F_OOM, "oom_kill");
	cg->pidsmax0 = read_keyed(cg, F_PIDS_EV, "max");
	cg->cpu0 = cpu_usage_ns(cg);
	return 0;
}

int exec_cgroup_join_fds(struct exec_cgroup *cg, int *fds, size_t max)
{
	size_t n = 0;
	for (int i = 0; i < C_COUNT && n < max; i++) {
		if (!cg->dir[i])
			continue;
		bool dup = false;
		for (int j = 0; j < i; j++)
			if (cg->dir[j] && !strcmp(cg->dir[j], cg->dir[i]))
				dup = true;
		if (dup)
			continue;
		if (cg->procs_fd[i] < 0) {
			char path[600];
			snprintf(path, sizeof(path), "%s/cgroup.procs", cg->dir[i]);
			cg->procs_fd[i] = open(path, O_WRONLY | O_CLOEXEC);
			if (cg->procs_fd[i] < 0) {
				log_warn("exec: open %s: %s", path, strerror(errno));
				return SS_EIO;
			}
		}
		fds[n++] = cg->procs_fd[i];
	}
	return (int)n;
}

int exec_cgroup_usage(struct exec_cgroup *cg, struct exec_usage *u)
{
	uint64_t cpu = cpu_usage_ns(cg);
	u->cpu_ns = cpu >= cg->cpu0 ? cpu - cg->cpu0 : cpu;
	u->peak_mem_bytes = read_u64(cg, F_PEAK);
	u->oom_kills = read_keyed(cg, F_OOM, "oom_kill") - cg->oom0;
	uint64_t pidsmax = read_keyed(cg, F_PIDS_EV, "max");
	u->pids_limit_hit = pidsmax > cg->pidsmax0;
	/* The next task's baseline, kept only if the cgroup is already empty. */
	cg->oom0 += u->oom_kills;
	cg->pidsmax0 = pidsmax;
	cg->cpu0 = cpu;
	cg->base_valid = exec_cgroup_empty(cg);
	return 0;
}

/*
 * SIGKILLs every member of the cgroup directory dir until none is left
 * (cgroup v1 has no cgroup.kill). Returns 0 or SS_ETIMEDOUT.
 */
static int kill_members(const char *dir)
{
	char b[8192];
	for (int round = 0; round < 100; round++) {
		if (read_small(dir, "cgroup.procs", b, sizeof(b)) || !b[0])
			return 0;
		for (char *p = b; *p;) {
			char *end;
			long pid = strtol(p, &end, 10);
			/*
			 * A pid not followed by its newline was cut off by the end
			 * of the buffer (the file is longer than b): it is only a
			 * prefix of a member's pid, so it is left for the next round.
			 */
			if (end == p || *end != '\n')
				break;
			if (pid > 1)
				kill((pid_t)pid, SIGKILL);
			p = end;
			while (*p == '\n')
				p++;
		}
		usleep(1000);
	}
	return SS_ETIMEDOUT;
}

int exec_cgroup_kill(struct exec_cgroup *cg)
{
	cg->base_valid = false;
	if (cg->mode == EXEC_CG_V2 && write_str(cg->dir[C_PIDS], "cgroup.kill", "1") == 0)
		return 0;
	return kill_members(cg->dir[C_PIDS]);
}

bool exec_cgroup_empty(struct exec_cgroup *cg)
{
	char b[64];
	/* pids.current counts every task until it is reaped, so 0 settles it. */
	if (cg_read(cg, F_PIDS_CUR, b, sizeof(b)) == 0 && !strcmp(b, "0\n"))
		return true;
	if (read_small(cg->dir[C_PIDS], "cgroup.procs", b, sizeof(b)))
		return false;
	return b[0] == '\0';
}

void exec_cgroup_destroy(struct exec_cgroup *cg)
{
	if (!cg)
		return;
	for (int i = 0; i < C_COUNT; i++)
		if (cg->procs_fd[i] >= 0)
			close(cg->procs_fd[i]);
	for (int i = 0; i < F_COUNT; i++)
		if (cg->fd[i] >= 0)
			close(cg->fd[i]);
	for (int i = 0; i < C_COUNT; i++) {
		if (!cg->dir[i])
			continue;
		bool dup = false;
		for (int j = 0; j < i; j++)
			if (cg->dir[j] && !strcmp(cg->dir[j], cg->dir[i]))
				dup = true;
		if (!dup && rmdir(cg->dir[i]) < 0 && errno != ENOENT)
			log_warn("exec: rmdir %s: %s", cg->dir[i], strerror(errno));
	}
	for (int i = 0; i < C_COUNT; i++)
		free(cg->dir[i]);
	free(cg);
}

/* Kills every member of the cgroup directory dir (v1 or v2) and removes it. */
static void sweep_dir(const char *dir)
{
	if (write_str(dir, "cgroup.kill", "1") != 0)
		(void)kill_members(dir);
	for (int i = 0; i < 100 && rmdir(dir) < 0 && errno == EBUSY; i++)
		usleep(2000);
}

/* True when name is "seeswarm-task-PID-SEQ" and PID is a process that no longer exists. */
static bool stale_name(const char *name)
{
	static const char prefix[] = "seeswarm-task-";
	if (strncmp(name, prefix, sizeof(prefix) - 1) != 0)
		return false;
	char *end = NULL;
	long pid = strtol(name + sizeof(prefix) - 1, &end, 10);
	if (!end || *end != '-' || pid <= 0 || pid == (long)getpid())
		return false;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

int exec_cgroup_sweep(enum exec_cg_mode mode)
{
	static const char *const ctrls[] = {"", "memory", "pids", "cpu", "cpuacct"};
	char mnt[256], path[512];
	int removed = 0;
	for (size_t i = 0; i < sizeof(ctrls) / sizeof(ctrls[0]); i++) {
		if ((mode == EXEC_CG_V2) != (i == 0))
			continue;
		if (self_cgroup(ctrls[i], mnt, sizeof(mnt), path, sizeof(path)) != 0)
			continue;
		char *parent = xasprintf("%s%s", mnt, path);
		DIR *d = opendir(parent);
		struct dirent *e;
		while (d && (e = readdir(d)) != NULL) {
			if (!stale_name(e->d_name))
				continue;
			char *dir = xasprintf("%s/%s", parent, e->d_name);
			sweep_dir(dir);
			removed++;
			free(dir);
		}
		if (d)
			closedir(d);
		free(parent);
	}
	return removed;
}
