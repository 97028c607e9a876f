/*
 * sandbox.c - runs one task in a fresh sandbox and collects its result, and
 * the agent's resource manager (exec_capacity).
 *
 * Order of construction (see docs/executor.md for what each layer stops):
 *   once, in exec_sandbox_new(): the template mount namespace (tmpl_mounts(),
 *     in a child): a tmpfs root holding read-only, nosuid, nodev bind mounts
 *     of the host's /usr, /etc (and the /bin, /lib ... symlinks or
 *     directories), a read-only /dev and empty mount points, pivoted to and
 *     kept as an nsfs descriptor.
 *   per task, parent: bundle digest and allow-list; inputs copied into
 *     sealed memfds while hashing; a pooled cgroup with the task's limits; a
 *     detached read-only clone of the bundle's tree (open_tree); pipes.
 *   clone(CLONE_NEWPID|NEWIPC|NEWUTS[|NEWNET]) as real root; the child:
 *     joins the cgroup (writes "0" to the cgroup.procs fds the parent opened);
 *     enters the template namespace; makes a detached /proc of its pid
 *     namespace; drops to the sandbox uid/gid and unshares a user namespace
 *     that maps only that uid to 0 together with a copy of the template
 *     namespace (which that user namespace then owns); attaches /proc;
 *     drops the bounding and ambient capability sets and locks the
 *     securebits; sets its parent-death signal again (the credential
 *     changes cleared it); attaches the bundle at /bundle; mounts
 *     size-capped /tmp and /out and a read-only /in filled from the memfds;
 *     passes an fd of /out to the parent (SCM_RIGHTS) so the outputs outlive
 *     the mount namespace; clears its effective capabilities; rlimits;
 *     no_new_privs; Landlock; seccomp; execve. A prepared child does
 *     everything up to the parent-death signal ahead of demand. Any failure
 *     is written as {stage, errno} to a CLOEXEC pipe and the child exits 127.
 *   parent: polls stdout/stderr (capped), the error pipe, a pidfd and the
 *     cancellation token (spec->cancel) until exit, cancellation or the
 *     deadline (then SIGKILL to the pid-namespace init, which kills the
 *     whole tree, and to the cgroup); reads cgroup usage; copies
 *     the outputs out with bounds; returns the cgroup to the pool.
 *
 * The child runs between clone and execve in the agent's own address space
 * (CLONE_VM|CLONE_VFORK, on a stack of its own, with every signal blocked
 * until its handlers are reset): copying the agent's page tables for every
 * task, and faulting them back in, cost more than the rest of the sandbox.
 * The calling thread sleeps until the child has called execve or exited, so
 * the child may only make system calls: every string it needs is built by
 * the parent beforehand, it allocates nothing and it touches no memory but
 * its stack and the plan. Switching to the sandbox uid clears the dumpable
 * flag of the mm that every such child shares, which makes /proc/self root's
 * and would stop another child from writing its id maps; so each child holds
 * a process-wide OFD lock (released by close, exec or death) from the uid
 * switch until its maps are written and the flag is set again.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <linux/openat2.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "agent/exec/exec.h"

#if defined(__SANITIZE_ADDRESS__)
#define SS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SS_ASAN 1
#endif
#endif
#ifdef SS_ASAN
#include <sanitizer/asan_interface.h>
#endif

#ifndef SECBIT_NOROOT
#define SECBIT_NOROOT (1 << 0)
#define SECBIT_NOROOT_LOCKED (1 << 1)
#define SECBIT_NO_SETUID_FIXUP (1 << 2)
#define SECBIT_NO_SETUID_FIXUP_LOCKED (1 << 3)
#define SECBIT_KEEP_CAPS_LOCKED (1 << 5)
#define SECBIT_NO_CAP_AMBIENT_RAISE (1 << 6)
#define SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED (1 << 7)
#endif

#define MAX_ROOT_ENTS 10
#define MAX_CG_FDS 4
#define POOL_MAX 16
#define OUT_MAX_DEPTH 8
#define CHILD_STACK (256 * 1024)
#define WARM_MAX 8
#define WARM_ACK_MS 10000
#define REAP_MAX 256

/* ---- sandbox factory --------------------------------------------------- */

struct root_ent {
	char *name;  /* "usr" */
	char *link;  /* symlink target when the host entry is a symlink, else NULL */
};

struct exec_sandbox {
	char *state_dir;
	char *root_mnt;
	uid_t uid;
	gid_t gid;
	void *bpf;
	int ll_abi;
	enum exec_cg_mode cg_mode;
	bool shared_netns;
	int netns_fd, host_netns_fd;
	int tmpl_fd; /* the template mount namespace (nsfs), see tmpl_build() */
	int cap_last;
	size_t capture;
	uint8_t (*allow)[SHA256_LEN];
	size_t n_allow;
	struct root_ent ents[MAX_ROOT_ENTS];
	size_t n_ents;
	pthread_mutex_t lock;
	struct exec_cgroup *pool[POOL_MAX];
	size_t n_pool;
	struct warm_slot *warm; /* prepared sandboxes, see warm_main() */
	size_t n_warm;
	bool warm_stop;         /* under lock */
	pthread_cond_t warm_cond; /* signalled with warm_stop set; parked slot threads wait on it */
	atomic_ulong warm_hits;
	unsigned long seq;
	char describe[256];
	/* Finished tasks' mount namespaces, torn down off the task's path (reaper_main). */
	pthread_t reaper;
	bool reaper_started;
	pthread_mutex_t reap_lock;
	pthread_cond_t reap_cond;
	struct reap_ent {
		int mntns;               /* owned */
		struct exec_cgroup *cg;  /* owned; pooled once the namespace is gone */
	} reap[REAP_MAX];                /* under reap_lock */
	size_t n_reap;
	bool reap_stop;
};

static int tmpl_build(struct exec_sandbox *sb);
static void *reaper_main(void *arg);
static void cgroup_put(struct exec_sandbox *sb, struct exec_cgroup *cg);
static void warm_start(struct exec_sandbox *sb, unsigned n);
static void warm_stop(struct exec_sandbox *sb);

/* The lock around the id-map window (see the top of this file): a memfd that each child reopens. */
static pthread_once_t idlock_once = PTHREAD_ONCE_INIT;
static char idlock_path[48];

static void idlock_init(void)
{
	int fd = memfd_create("seeswarm-idmap-lock", MFD_CLOEXEC);
	if (fd < 0)
		fatal("exec: memfd_create: %s", strerror(errno));
	snprintf(idlock_path, sizeof(idlock_path), "/proc/self/fd/%d", fd);
}

static const char *const host_dirs[] = {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc"};

int exec_sandbox_new(struct exec_sandbox **out, const struct exec_sandbox_opts *opts)
{
	struct exec_sandbox *sb = xcalloc(1, sizeof(*sb));
	int rc = 0;

	*out = NULL;
	pthread_mutex_init(&sb->lock, NULL);
	pthread_cond_init(&sb->warm_cond, NULL);
	pthread_mutex_init(&sb->reap_lock, NULL);
	pthread_cond_init(&sb->reap_cond, NULL);
	sb->netns_fd = sb->host_netns_fd = sb->tmpl_fd = -1;
	if (geteuid() != 0) {
		rc = SS_EPERM;
		goto out;
	}
	pthread_once(&idlock_once, idlock_init);
	sb->state_dir = xstrdup(opts && opts->state_dir ? opts->state_dir : "/run/seeswarm-exec");
	sb->root_mnt = xasprintf("%s/root", sb->state_dir);
	if ((rc = dir_ensure(sb->root_mnt, 0755)))
		goto out;
	sb->uid = opts && opts->uid ? opts->uid : EXEC_SANDBOX_UID;
	sb->gid = opts && opts->gid ? opts->gid : (gid_t)sb->uid;
	sb->capture = opts && opts->capture_bytes ? opts->capture_bytes : EXEC_CAPTURE_DEFAULT;
	if (opts && opts->n_allow) {
		sb->allow = xcalloc(opts->n_allow, SHA256_LEN);
		memcpy(sb->allow, opts->allow, opts->n_allow * SHA256_LEN);
		sb->n_allow = opts->n_allow;
	}
	if ((rc = exec_seccomp_build(&sb->bpf)))
		goto out;
	sb->ll_abi = opts && opts->no_landlock ? 0 : exec_landlock_abi();
	sb->cg_mode = exec_cgroup_detect();
	if (sb->cg_mode == EXEC_CG_NONE) {
		log_warn("exec: no usable cgroup controllers; memory, pids and CPU limits are "
			 "not enforced beyond rlimits");
	} else {
		int swept = exec_cgroup_sweep(sb->cg_mode);
		if (swept > 0)
			log_info("exec: removed %d stale task cgroups (and killed their orphaned "
				 "tasks) left by an agent that died", swept);
	}

	char *lc = NULL;
	size_t lclen = 0;
	sb->cap_last = CAP_LAST_CAP;
	if (!file_read("/proc/sys/kernel/cap_last_cap", 32, &lc, &lclen)) {
		sb->cap_last = atoi(lc);
		free(lc);
	}
	for (size_t i = 0; i < ARRAY_LEN(host_dirs); i++) {
		char path[64], target[256];
		struct stat st;
		snprintf(path, sizeof(path), "/%s", host_dirs[i]);
		if (lstat(path, &st) < 0)
			continue;
		struct root_ent *e = &sb->ents[sb->n_ents];
		if (S_ISLNK(st.st_mode)) {
			ssize_t n = readlink(path, target, sizeof(target) - 1);
			if (n <= 0)
				continue;
			target[n] = '\0';
			e->link = xstrdup(target);
		} else if (!S_ISDIR(st.st_mode)) {
			continue;
		}
		e->name = xstrdup(host_dirs[i]);
		sb->n_ents++;
	}

	if ((rc = tmpl_build(sb)))
		goto out;
	if (opts && opts->shared_netns) {
		if (sb->ll_abi < 6) {
			log_warn("exec: a shared network namespace needs Landlock ABI >= 6 to keep "
				 "tasks' abstract sockets apart; using a fresh one per task");
		} else {
			sb->host_netns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
			if (sb->host_netns_fd < 0 || unshare(CLONE_NEWNET) < 0) {
				rc = SS_EIO;
				goto out;
			}
			sb->netns_fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
			if (setns(sb->host_netns_fd, CLONE_NEWNET) < 0)
				fatal("exec: cannot return to the host network namespace: %s",
				      strerror(errno));
			if (sb->netns_fd < 0) {
				rc = SS_EIO;
				goto out;
			}
			sb->shared_netns = true;
		}
	}
	if (pthread_create(&sb->reaper, NULL, reaper_main, sb) != 0) {
		rc = SS_EIO;
		goto out;
	}
	sb->reaper_started = true;
	if (opts && opts->warm)
		warm_start(sb, opts->warm > WARM_MAX ? WARM_MAX : opts->warm);
	snprintf(sb->describe, sizeof(sb->describe),
		 "namespaces=user,pid,mnt,ipc,uts,net(%s) seccomp=on landlock=%s%d cgroup=%s uid=%u",
		 sb->shared_netns ? "shared-empty" : "fresh", sb->ll_abi ? "abi" : "off",
		 sb->ll_abi, sb->cg_mode == EXEC_CG_V2 ? "v2" : sb->cg_mode == EXEC_CG_V1 ? "v1" : "none",
		 (unsigned)sb->uid);
out:
	if (rc)
		exec_sandbox_free(sb);
	else
		*out = sb;
	return rc;
}

void exec_sandbox_free(struct exec_sandbox *sb)
{
	if (!sb)
		return;
	warm_stop(sb);
	if (sb->reaper_started) {
		pthread_mutex_lock(&sb->reap_lock);
		sb->reap_stop = true;
		pthread_cond_signal(&sb->reap_cond);
		pthread_mutex_unlock(&sb->reap_lock);
		pthread_join(sb->reaper, NULL);
	}
	for (size_t i = 0; i < sb->n_reap; i++) {
		close(sb->reap[i].mntns);
		cgroup_put(sb, sb->reap[i].cg);
	}
	pthread_cond_destroy(&sb->reap_cond);
	pthread_mutex_destroy(&sb->reap_lock);
	for (size_t i = 0; i < sb->n_pool; i++)
		exec_cgroup_destroy(sb->pool[i]);
	for (size_t i = 0; i < sb->n_ents; i++) {
		free(sb->ents[i].name);
		free(sb->ents[i].link);
	}
	if (sb->netns_fd >= 0)
		close(sb->netns_fd);
	if (sb->tmpl_fd >= 0)
		close(sb->tmpl_fd);
	if (sb->host_netns_fd >= 0)
		close(sb->host_netns_fd);
	exec_seccomp_free(sb->bpf);
	free(sb->allow);
	free(sb->state_dir);
	free(sb->root_mnt);
	pthread_mutex_destroy(&sb->lock);
	pthread_cond_destroy(&sb->warm_cond);
	free(sb);
}

/*
 * The reaper: closes the descriptors of finished tasks' mount namespaces,
 * then returns each task's cgroup to the pool. The last reference to a
 * mount namespace unmounts its tmpfs and proc superblocks and waits for an
 * RCU grace period; held by exec_run() past the task's exit, that work
 * happens here instead of in the task's exit, which the agent waits for.
 * The cgroup waits for it: the task's /tmp pages stay charged to it until
 * the namespace is gone, and the next task must not inherit the charge.
 * Runs until reap_stop; leaves what is queued then to exec_sandbox_free().
 */
static void *reaper_main(void *arg)
{
	struct exec_sandbox *sb = arg;
	struct reap_ent batch[REAP_MAX];
	pthread_mutex_lock(&sb->reap_lock);
	while (!sb->reap_stop) {
		if (!sb->n_reap) {
			pthread_cond_wait(&sb->reap_cond, &sb->reap_lock);
			continue;
		}
		size_t n = sb->n_reap;
		memcpy(batch, sb->reap, n * sizeof(batch[0]));
		sb->n_reap = 0;
		pthread_mutex_unlock(&sb->reap_lock);
		for (size_t i = 0; i < n; i++) {
			close(batch[i].mntns);
			cgroup_put(sb, batch[i].cg);
		}
		pthread_mutex_lock(&sb->reap_lock);
	}
	pthread_mutex_unlock(&sb->reap_lock);
	return NULL;
}

/*
 * Ends a task's hold on its mount namespace (mntns, owned, or -1) and its
 * cgroup (owned, or NULL): on the reaper when there is a namespace to tear
 * down, here otherwise or when the reaper's queue is full.
 */
static void reap_later(struct exec_sandbox *sb, int mntns, struct exec_cgroup *cg)
{
	bool queued = false;
	if (mntns >= 0) {
		pthread_mutex_lock(&sb->reap_lock);
		queued = sb->n_reap < REAP_MAX;
		if (queued) {
			sb->reap[sb->n_reap++] = (struct reap_ent){.mntns = mntns, .cg = cg};
			pthread_cond_signal(&sb->reap_cond);
		}
		pthread_mutex_unlock(&sb->reap_lock);
	}
	if (queued)
		return;
	if (mntns >= 0)
		close(mntns);
	cgroup_put(sb, cg);
}

const char *exec_sandbox_describe(const struct exec_sandbox *sb)
{
	return sb->describe;
}

/* ---- the child --------------------------------------------------------- */

enum stage {
	ST_CGROUP = 1, ST_PRIVATE, ST_ROOT, ST_BIND, ST_BUNDLE, ST_DEV, ST_TMP, ST_OUT, ST_IN,
	ST_PROC, ST_PIVOT, ST_IDS, ST_USERNS, ST_IDMAP, ST_CAPS, ST_RLIMIT, ST_NNP, ST_CWD,
	ST_LANDLOCK, ST_STDIO, ST_SECCOMP, ST_EXEC, ST_COUNT
};

static const char *const stage_names[ST_COUNT] = {
	[ST_CGROUP] = "joining the cgroup", [ST_PRIVATE] = "entering a copy of the template mount namespace",
	[ST_ROOT] = "mounting the root tmpfs", [ST_BIND] = "bind-mounting host directories",
	[ST_BUNDLE] = "mounting the bundle", [ST_DEV] = "building /dev",
	[ST_TMP] = "mounting /tmp", [ST_OUT] = "mounting /out", [ST_IN] = "populating /in",
	[ST_PROC] = "mounting /proc", [ST_PIVOT] = "pivot_root",
	[ST_IDS] = "switching to the sandbox uid", [ST_USERNS] = "creating the user namespace",
	[ST_IDMAP] = "writing the id maps", [ST_CAPS] = "dropping capabilities",
	[ST_RLIMIT] = "setting rlimits", [ST_NNP] = "setting no_new_privs",
	[ST_CWD] = "changing to the working directory", [ST_LANDLOCK] = "applying Landlock",
	[ST_STDIO] = "setting up stdio", [ST_SECCOMP] = "loading seccomp", [ST_EXEC] = "execve",
};

struct child_msg {
	int32_t stage;
	int32_t err;
};

struct plan {
	const char *root;
	int cg_fds[MAX_CG_FDS]; /* borrowed from the task's cgroup (exec_cgroup_join_fds) */
	int n_cg;
	const struct root_ent *ents;
	size_t n_ents;
	char *ent_dst[MAX_ROOT_ENTS];
	char *ent_src[MAX_ROOT_ENTS];
	char *dev, *tmp, *in, *out, *proc, *bundle_dst;
	char *dev_null, *dev_zero, *dev_full, *dev_random, *dev_urandom;
	char *dev_fd, *dev_stdin, *dev_stdout, *dev_stderr;
	char *tmp_opts, *out_opts, *in_opts;
	int tmpl_fd, bundle_fd;
	int lock_fd; /* the id-map lock, a description of this task's own (exec_run owns it) */
	int *in_fds;
	char **in_dst;
	size_t n_in;
	uid_t uid;
	gid_t gid;
	char uid_map[32], gid_map[32];
	int ll_abi;
	bool network;
	bool no_out; /* /out stays the template's read-only directory; sock_w is -1 */
	const void *bpf;
	int cap_last;
	rlim_t fsize, nofile, cpu_s, as;
	char **cand;
	size_t n_cand;
	char *const *argv;
	char *const *envp;
	const char *cwd;
	int out_w, err_w, errpipe_w, sock_w;
};

/*
 * A prepared sandbox: a child that has joined a pooled cgroup, entered a copy
 * of the template mount namespace and mounted its /proc, and now waits on go
 * for a task. It shares the agent's address space and descriptor table
 * (CLONE_VM|CLONE_VFORK|CLONE_FILES) while it waits, so exec_run() fills the
 * task's half of the plan in place and opens the task's descriptors
 * normally; on go the child unshares the descriptor table (taking a copy),
 * acknowledges on ack, and runs child_run(). Its slot thread sleeps in
 * clone() meanwhile, which keeps the child's stack and thread pointer valid.
 *
 * Ownership: the slot thread owns a generation until exec_run() moves it
 * from W_READY to W_TAKEN; from then exec_run() owns the plan, the cgroup
 * and the descriptors. The struct itself has two references (thread and
 * taker); the last to drop it frees it.
 */
enum { W_PREPARING = 1, W_READY, W_TAKEN, W_CANCELLED };

struct warm_gen {
	struct plan p;
	struct exec_cgroup *cg;
	int go[2], ack[2], err[2];
	pid_t tid; /* written by the kernel (CLONE_PARENT_SETTID) */
	atomic_int state;
	atomic_int refs;
};

struct warm_slot {
	struct exec_sandbox *sb;
	pthread_t thread;
	bool started;
	struct warm_gen *gen; /* the generation being prepared or waiting, under sb->lock */
};

static _Noreturn void child_fail(const struct plan *p, int stage, int err)
{
	struct child_msg m = {.stage = stage, .err = err};
	ssize_t n = write(p->errpipe_w, &m, sizeof(m));
	(void)n;
	_exit(127);
}

static int write_file(int dirfd, const char *path, const char *s)
{
	int fd = openat(dirfd, path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t n = strlen(s);
	ssize_t w = write(fd, s, n);
	int e = errno;
	close(fd);
	if (w != (ssize_t)n) {
		errno = w < 0 ? e : EIO;
		return -1;
	}
	return 0;
}

/* Makes the mount at path and everything below it read-only, nosuid and nodev. */
static int ro_recursive(const char *path)
{
	struct mount_attr a = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
	if (syscall(SYS_mount_setattr, AT_FDCWD, path, AT_RECURSIVE, &a, sizeof(a)) == 0)
		return 0;
	if (errno != ENOSYS)
		return -1;
	return mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV,
		     NULL);
}

static int send_fd(int sock, int fd)
{
	char data = 'o';
	struct iovec iov = {.iov_base = &data, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_NOSIGNAL) == 1 ? 0 : -1;
}

static int mknod_dev(const char *path, unsigned minor)
{
	return mknod(path, S_IFCHR | 0666, makedev(1, minor));
}

/*
 * Builds the template mount namespace in a child of exec_sandbox_new(): a
 * tmpfs root holding read-only, nosuid, nodev bind mounts of the host's
 * /usr, /etc ..., a read-only /dev with a few character devices, and empty
 * mount points for the per-task mounts; the root is then made read-only and
 * pivoted to, and the namespace is handed to the parent (SCM_RIGHTS).
 */
static void tmpl_mounts(const struct plan *p)
{
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		child_fail(p, ST_PRIVATE, errno);
	if (mount("tmpfs", p->root, "tmpfs", MS_NOSUID | MS_NODEV,
		  "size=1m,nr_inodes=4096,mode=0755") < 0)
		child_fail(p, ST_ROOT, errno);
	for (size_t i = 0; i < p->n_ents; i++) {
		if (p->ents[i].link) {
			if (symlink(p->ents[i].link, p->ent_dst[i]) < 0)
				child_fail(p, ST_BIND, errno);
			continue;
		}
		if (mkdir(p->ent_dst[i], 0755) < 0 ||
		    mount(p->ent_src[i], p->ent_dst[i], NULL, MS_BIND | MS_REC, NULL) < 0 ||
		    ro_recursive(p->ent_dst[i]) < 0)
			child_fail(p, ST_BIND, errno);
	}
	if (mkdir(p->bundle_dst, 0755) < 0 || mkdir(p->tmp, 01777) < 0 || mkdir(p->out, 0755) < 0 ||
	    mkdir(p->in, 0755) < 0 || mkdir(p->proc, 0555) < 0)
		child_fail(p, ST_ROOT, errno);

	/* /dev: a few character devices on a tiny read-only tmpfs. */
	if (mkdir(p->dev, 0755) < 0 ||
	    mount("tmpfs", p->dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,nr_inodes=64,mode=0755") < 0 ||
	    mknod_dev(p->dev_null, 3) < 0 || mknod_dev(p->dev_zero, 5) < 0 ||
	    mknod_dev(p->dev_full, 7) < 0 || mknod_dev(p->dev_random, 8) < 0 ||
	    mknod_dev(p->dev_urandom, 9) < 0 || symlink("/proc/self/fd", p->dev_fd) < 0 ||
	    symlink("/proc/self/fd/0", p->dev_stdin) < 0 ||
	    symlink("/proc/self/fd/1", p->dev_stdout) < 0 ||
	    symlink("/proc/self/fd/2", p->dev_stderr) < 0 ||
	    mount(NULL, p->dev, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC, NULL) < 0)
		child_fail(p, ST_DEV, errno);

	if (mount(NULL, p->root, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL) < 0)
		child_fail(p, ST_ROOT, errno);
	int nsfd = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
	if (nsfd < 0 || send_fd(p->sock_w, nsfd) < 0)
		child_fail(p, ST_PRIVATE, errno);
	if (chdir(p->root) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
	    umount2(".", MNT_DETACH) < 0 || chdir("/") < 0)
		child_fail(p, ST_PIVOT, errno);
}

static int tmpl_entry(void *arg)
{
	const struct plan *p = arg;
	tmpl_mounts(p);
	_exit(0);
}

/*
 * The task's mounts, in a copy of the template namespace: the bundle (a
 * detached read-only tree the parent cloned), size-capped /tmp and /out, a
 * read-only /in filled from the memfds, and a /proc of the task's pid
 * namespace. No pivot_root: the copy's root already is the template root.
 */
static void child_mounts(const struct plan *p)
{
	if (syscall(SYS_move_mount, p->bundle_fd, "", AT_FDCWD, p->bundle_dst,
		    MOVE_MOUNT_F_EMPTY_PATH) < 0)
		child_fail(p, ST_BUNDLE, errno);
	if (mount("tmpfs", p->tmp, "tmpfs", MS_NOSUID | MS_NODEV, p->tmp_opts) < 0)
		child_fail(p, ST_TMP, errno);
	if (!p->no_out) {
		if (mount("tmpfs", p->out, "tmpfs", MS_NOSUID | MS_NODEV, p->out_opts) < 0)
			child_fail(p, ST_OUT, errno);
		int ofd = open(p->out, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (ofd < 0 || send_fd(p->sock_w, ofd) < 0)
			child_fail(p, ST_OUT, errno);
		close(ofd);
	}

	if (p->n_in) {
		if (mount("tmpfs", p->in, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, p->in_opts) < 0)
			child_fail(p, ST_IN, errno);
		for (size_t i = 0; i < p->n_in; i++) {
			int fd = open(p->in_dst[i], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
			if (fd < 0)
				child_fail(p, ST_IN, errno);
			off_t off = 0;
			for (;;) {
				ssize_t n = sendfile(fd, p->in_fds[i], &off, 1 << 20);
				if (n < 0 && errno == EINTR)
					continue;
				if (n < 0)
					child_fail(p, ST_IN, errno);
				if (n == 0)
					break;
			}
			close(fd);
			/* Done with it: the child's RLIMIT_NOFILE (1024) is below EXEC_MAX_INPUTS. */
			close(p->in_fds[i]);
		}
		if (mount(NULL, p->in, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
			  NULL) < 0)
			child_fail(p, ST_IN, errno);
	}
}

/*
 * The part of child_identity() under the id-map lock. Returns 0, or the
 * failed stage with errno set.
 */
static int identity_locked(const struct plan *p, int proc)
{
	/*
	 * Raw system calls: glibc's set*id() would try to synchronise the
	 * parent's other threads, which do not exist in this child, and hang.
	 */
	if (syscall(SYS_setgroups, 0, NULL) < 0 ||
	    syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0 ||
	    syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
		return ST_IDS;
	/* Changing uid made us non-dumpable, which would make /proc/self root's. */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
		return ST_IDS;
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0)
		return ST_USERNS;
	if (write_file(proc, "setgroups", "deny") < 0 || write_file(proc, "uid_map", p->uid_map) < 0 ||
	    write_file(proc, "gid_map", p->gid_map) < 0 ||
	    syscall(SYS_setresgid, 0, 0, 0) < 0 || syscall(SYS_setresuid, 0, 0, 0) < 0)
		return ST_IDMAP;
	return 0;
}

/*
 * The child's identity: the sandbox uid and gid, then a user namespace that
 * maps only them (to 0), entered together with a private copy of the
 * template mount namespace, which the new user namespace therefore owns.
 * Drops the bounding and ambient sets and locks the securebits, but keeps
 * the effective capabilities (in the new namespace only) for the task's
 * mounts; child_run() clears them.
 *
 * Takes and releases the id-map lock through p->lock_fd, an open file
 * description of this child's own (the agent holds it too, and a prepared
 * child shares the agent's descriptor table here, so the lock is released
 * explicitly and the descriptor is left open). proc is the child's
 * /proc/self. Returns 0, or the failed stage with errno set.
 */
static int child_identity(const struct plan *p, int proc)
{
	int lock_fd = p->lock_fd;
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	while (fcntl(lock_fd, F_OFD_SETLKW, &fl) < 0)
		if (errno != EINTR)
			return ST_IDS;
	/*
	 * Released explicitly even on failure: other children may hold copies
	 * of this description (a fresh child copies the agent's descriptor
	 * table), so exiting would not release it, and one of them could be
	 * waiting for it.
	 */
	int stage = identity_locked(p, proc);
	int err = errno;
	fl.l_type = F_UNLCK;
	if (fcntl(lock_fd, F_OFD_SETLK, &fl) < 0 && !stage) {
		stage = ST_IDMAP;
		err = errno;
	}
	if (stage) {
		errno = err;
		return stage;
	}

	/* uid 0 in the namespace must never regain capabilities through exec. */
	if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
					    SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
					    SECBIT_NO_CAP_AMBIENT_RAISE |
					    SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED,
		  0, 0, 0) < 0)
		return ST_CAPS;
	for (int c = 0; c <= p->cap_last; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0 && errno != EINVAL)
			return ST_CAPS;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return ST_CAPS;
	return 0;
}

/*
 * The part of the child that does not depend on the task: the cgroup, the
 * host name, the identity (user namespace and capability sets), a copy of
 * the template mount namespace and a /proc of the new pid namespace. A
 * prepared child (warm_entry) runs it ahead of demand. The descriptors it
 * opens are closed before it returns: a prepared child shares the agent's
 * descriptor table until it is taken.
 */
static void child_prepare(const struct plan *p)
{
	/* A dying agent takes its tasks with it (set again below: a change of credentials clears it). */
	prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	for (int i = 0; i < p->n_cg; i++)
		if (write(p->cg_fds[i], "0", 1) != 1)
			child_fail(p, ST_CGROUP, errno);
	if (sethostname("seeswarm-task", 13) < 0)
		child_fail(p, ST_PRIVATE, errno);
	if (setns(p->tmpl_fd, CLONE_NEWNS) < 0)
		child_fail(p, ST_PRIVATE, errno);
	/*
	 * /proc of the new pid namespace, made while the child still has the
	 * agent's privileges (proc needs them over the pid namespace's owner)
	 * and attached once it is in its own mount namespace. The descriptors
	 * are closed on failure too (see above).
	 */
	int fs = -1, pm = -1, self = -1, stage = 0, err = 0;
	fs = (int)syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC);
	if (fs < 0 || syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0 ||
	    (pm = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC,
			       MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)) < 0 ||
	    (self = openat(pm, "self", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    ((stage = child_identity(p, self)) == 0 &&
	     syscall(SYS_move_mount, pm, "", AT_FDCWD, p->proc, MOVE_MOUNT_F_EMPTY_PATH) < 0))
		stage = ST_PROC; /* a failed identity left its own stage and skipped this */
	err = errno;
	if (self >= 0)
		close(self);
	if (pm >= 0)
		close(pm);
	if (fs >= 0)
		close(fs);
	if (stage)
		child_fail(p, stage, err);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		child_fail(p, ST_PRIVATE, errno);
}

/*
 * Resets to SIG_DFL every signal the agent ignores or catches (glibc's own
 * 32 and 33 included), before the child unblocks them: a caught one would
 * run the agent's handler here, and an ignored one would stay ignored
 * across execve. The child's own status file (SigIgn, SigCgt), read through
 * proc, its /proc/self, says which those are, which saves about 60 system
 * calls; if it cannot be read, every signal is reset.
 */
static void child_signals_default(int proc)
{
	uint64_t set = ~0ULL;
	char b[4096];
	size_t len = 0;
	int fd = openat(proc, "status", O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n;
		while (len < sizeof(b) - 1 && (n = read(fd, b + len, sizeof(b) - 1 - len)) > 0)
			len += (size_t)n;
		close(fd);
	}
	b[len] = '\0';
	const char *ign = strstr(b, "\nSigIgn:\t"), *cgt = strstr(b, "\nSigCgt:\t");
	if (ign && cgt) {
		char *e1, *e2;
		uint64_t vi = strtoull(ign + 9, &e1, 16), vc = strtoull(cgt + 9, &e2, 16);
		if (*e1 == '\n' && *e2 == '\n')
			set = vi | vc;
	}
	/*
	 * The raw system call: glibc's sigaction() refuses 32 and 33, which it
	 * keeps for itself, yet an agent may have inherited them ignored.
	 */
	struct {
		void (*handler)(int);
		unsigned long flags;
		void (*restorer)(void);
		uint64_t mask;
	} dfl = {.handler = SIG_DFL};
	for (int s = 1; s <= 64; s++)
		if (set & (1ULL << (s - 1)))
			syscall(SYS_rt_sigaction, s, &dfl, NULL, sizeof(dfl.mask));
}

/* The task's part: its mounts, identity, limits and filters, then execve. */
static _Noreturn void child_run(const struct plan *p)
{
	umask(0);
	child_mounts(p);
	umask(022);
	/* The mounts were the last use of the capabilities. */
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	memset(data, 0, sizeof(data));
	if (syscall(SYS_capset, &hdr, data) < 0)
		child_fail(p, ST_CAPS, errno);
	int proc = open("/proc/self", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (proc < 0)
		child_fail(p, ST_IDS, errno);

	struct rlimit rl;
	rl.rlim_cur = rl.rlim_max = 0;
	if (setrlimit(RLIMIT_CORE, &rl) < 0)
		child_fail(p, ST_RLIMIT, errno);
	rl.rlim_cur = rl.rlim_max = p->fsize;
	if (setrlimit(RLIMIT_FSIZE, &rl) < 0)
		child_fail(p, ST_RLIMIT, errno);
	rl.rlim_cur = rl.rlim_max = p->nofile;
	if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
		child_fail(p, ST_RLIMIT, errno);
	rl.rlim_cur = rl.rlim_max = p->cpu_s;
	if (setrlimit(RLIMIT_CPU, &rl) < 0)
		child_fail(p, ST_RLIMIT, errno);
	if (p->as) {
		rl.rlim_cur = rl.rlim_max = p->as;
		if (setrlimit(RLIMIT_AS, &rl) < 0)
			child_fail(p, ST_RLIMIT, errno);
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		child_fail(p, ST_NNP, errno);
	if (chdir(p->cwd) < 0)
		child_fail(p, ST_CWD, errno);
	if (p->ll_abi > 0) {
		const char *const rw[] = {"/tmp", p->no_out ? NULL : "/out", NULL};
		int r = exec_landlock_apply(p->ll_abi, rw, p->network);
		if (r < 0)
			child_fail(p, ST_LANDLOCK, -r);
	}

	child_signals_default(proc);
	close(proc);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	int nfd = open("/dev/null", O_RDONLY);
	if (nfd < 0 || dup2(nfd, 0) < 0 || dup2(p->out_w, 1) < 0 || dup2(p->err_w, 2) < 0)
		child_fail(p, ST_STDIO, errno);
	/* Nothing of the agent's (sockets, keys) may reach the task. */
	if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
		child_fail(p, ST_STDIO, errno);
	int r = exec_seccomp_load(p->bpf);
	if (r < 0)
		child_fail(p, ST_SECCOMP, -r);
	int err = ENOENT;
	for (size_t i = 0; i < p->n_cand; i++) {
		execve(p->cand[i], p->argv, p->envp);
		if (errno != ENOENT || err == ENOENT)
			err = errno;
	}
	child_fail(p, ST_EXEC, err);
}

static int child_entry(void *arg)
{
	child_prepare(arg);
	child_run(arg);
}

static int warm_entry(void *arg)
{
	struct warm_gen *g = arg;
	child_prepare(&g->p);
	int expect = W_PREPARING;
	if (!atomic_compare_exchange_strong(&g->state, &expect, W_READY))
		_exit(0); /* cancelled while preparing */
	char c;
	ssize_t n;
	do
		n = read(g->go[0], &c, 1);
	while (n < 0 && errno == EINTR);
	if (n != 1)
		_exit(0); /* go closed: the sandbox factory is going away */
	/* The task's descriptors are in the shared table now: take a copy of it. */
	if (unshare(CLONE_FILES) < 0)
		child_fail(&g->p, ST_STDIO, errno);
	if (write(g->ack[1], "a", 1) != 1)
		child_fail(&g->p, ST_STDIO, errno);
	child_run(&g->p);
}

/* ---- parent helpers ---------------------------------------------------- */

static pthread_once_t stack_once = PTHREAD_ONCE_INIT;
static pthread_key_t stack_key;

static void stack_free(void *s)
{
	munmap(s, CHILD_STACK);
}

static void stack_key_init(void)
{
	if (pthread_key_create(&stack_key, stack_free))
		fatal("exec: pthread_key_create failed");
}

/*
 * Returns the top of the calling thread's child stack, mapped on first use
 * with a guard page below it and unmapped when the thread exits. One per
 * thread is enough: with CLONE_VFORK a thread has one child on it at a time.
 */
static void *child_stack_top(void)
{
	pthread_once(&stack_once, stack_key_init);
	char *s = pthread_getspecific(stack_key);
	if (!s) {
		s = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_NORESERVE, -1, 0);
		if (s == MAP_FAILED || mprotect(s, 4096, PROT_NONE) < 0)
			fatal("exec: cannot map a stack for the sandbox child: %s", strerror(errno));
		if (pthread_setspecific(stack_key, s))
			fatal("exec: pthread_setspecific failed");
	}
#ifdef SS_ASAN
	/* The last child left its frames' redzones behind (it never returned); start clean. */
	__asan_unpoison_memory_region(s + 4096, CHILD_STACK - 4096);
#endif
	return s + CHILD_STACK;
}

/*
 * Runs fn(arg) in a child sharing this address space (CLONE_VM|CLONE_VFORK
 * plus flags) on the calling thread's child stack, with every signal
 * blocked around the clone, and returns once the child has called execve or
 * exited: its pid, or -1 with errno set.
 */
static pid_t clone_vfork(int (*fn)(void *), unsigned long flags, void *arg)
{
	sigset_t all, old_mask;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old_mask);
	pid_t pid = clone(fn, child_stack_top(), (int)(flags | CLONE_VM | CLONE_VFORK), arg);
	int e = errno;
	pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
	errno = e;
	return pid;
}

static void plan_free(struct plan *p);
static int recv_fd(int sock);

static int cgroup_get(struct exec_sandbox *sb, struct exec_cgroup **out);
static void plan_paths(struct plan *p, const struct exec_sandbox *sb, const char *root);

/* The plan's part for child_identity(): the sandbox ids, their maps and the last capability. */
static void plan_identity(struct plan *p, const struct exec_sandbox *sb)
{
	p->uid = sb->uid;
	p->gid = sb->gid;
	snprintf(p->uid_map, sizeof(p->uid_map), "0 %u 1", (unsigned)sb->uid);
	snprintf(p->gid_map, sizeof(p->gid_map), "0 %u 1", (unsigned)sb->gid);
	p->cap_last = sb->cap_last;
}

static void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* Closes a generation's own pipes and frees its plan (whoever owns it at the end). */
static void warm_gen_close(struct warm_gen *g)
{
	for (int i = 0; i < 2; i++) {
		closep(&g->go[i]);
		closep(&g->ack[i]);
		closep(&g->err[i]);
	}
	closep(&g->p.lock_fd);
	plan_free(&g->p);
}

/* Frees a generation that exec_run() never took (the thread's). */
static void warm_gen_free(struct exec_sandbox *sb, struct warm_gen *g)
{
	warm_gen_close(g);
	cgroup_put(sb, g->cg);
	free(g);
}

/* A new generation with its cgroup, plan and pipes; NULL (logged) on failure. */
static struct warm_gen *warm_gen_new(struct exec_sandbox *sb)
{
	struct warm_gen *g = xcalloc(1, sizeof(*g));
	for (int i = 0; i < 2; i++)
		g->go[i] = g->ack[i] = g->err[i] = -1;
	for (int i = 0; i < MAX_CG_FDS; i++)
		g->p.cg_fds[i] = -1;
	g->p.bundle_fd = -1;
	g->p.tmpl_fd = sb->tmpl_fd;
	/* The child's own description of the id-map lock: it takes the lock while preparing. */
	g->p.lock_fd = open(idlock_path, O_RDWR | O_CLOEXEC);
	plan_paths(&g->p, sb, "");
	plan_identity(&g->p, sb);
	atomic_init(&g->state, W_PREPARING);
	atomic_init(&g->refs, 2);
	int rc = 0;
	if (sb->cg_mode != EXEC_CG_NONE) {
		if ((rc = cgroup_get(sb, &g->cg)))
			goto out;
		int n = exec_cgroup_join_fds(g->cg, g->p.cg_fds, MAX_CG_FDS);
		if (n < 0) {
			rc = n;
			goto out;
		}
		g->p.n_cg = n;
	}
	if (g->p.lock_fd < 0 || pipe2(g->go, O_CLOEXEC) < 0 || pipe2(g->ack, O_CLOEXEC) < 0 ||
	    pipe2(g->err, O_CLOEXEC) < 0)
		rc = SS_EIO;
	g->p.errpipe_w = g->err[1];
out:
	if (rc) {
		log_warn("exec: cannot prepare a sandbox ahead: %s", ss_strerror(rc));
		warm_gen_free(sb, g);
		g = NULL;
	}
	return g;
}

/*
 * Waits for sb->warm_stop. A slot thread that can prepare no more children
 * parks here rather than exit: the tasks it cloned have it as their parent,
 * and its exit would deliver their parent-death signal.
 */
static void warm_park(struct exec_sandbox *sb)
{
	pthread_mutex_lock(&sb->lock);
	while (!sb->warm_stop)
		pthread_cond_wait(&sb->warm_cond, &sb->lock);
	pthread_mutex_unlock(&sb->lock);
}

/*
 * A slot's thread: prepares one child at a time and sleeps in clone() until
 * that child has been taken and has called execve (or has exited). Stops on
 * sb->warm_stop; after a child fails to prepare (logged once) it parks until
 * then, and tasks use fresh children.
 */
static void *warm_main(void *arg)
{
	struct warm_slot *ws = arg;
	struct exec_sandbox *sb = ws->sb;
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	unsigned long flags = CLONE_VM | CLONE_VFORK | CLONE_FILES | CLONE_PARENT_SETTID |
			      CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD;
	if (sb->shared_netns) {
		if (setns(sb->netns_fd, CLONE_NEWNET) < 0) {
			log_warn("exec: a prepared-sandbox thread cannot enter the empty network "
				 "namespace: %s", strerror(errno));
			warm_park(sb);
			return NULL;
		}
	} else {
		flags |= CLONE_NEWNET;
	}
	for (;;) {
		struct warm_gen *g = warm_gen_new(sb);
		if (!g)
			break;
		pthread_mutex_lock(&sb->lock);
		bool stop = sb->warm_stop;
		if (!stop)
			ws->gen = g;
		pthread_mutex_unlock(&sb->lock);
		if (stop) {
			warm_gen_free(sb, g);
			break;
		}
		pid_t pid = clone(warm_entry, child_stack_top(), (int)flags, g, &g->tid);
		int clone_errno = errno;
		pthread_mutex_lock(&sb->lock);
		ws->gen = NULL;
		pthread_mutex_unlock(&sb->lock);
		int st = atomic_load(&g->state);
		if (pid > 0 && st == W_TAKEN) {
			if (atomic_fetch_sub(&g->refs, 1) == 1)
				free(g);
			continue;
		}
		bool failed = pid < 0 || st != W_CANCELLED;
		if (pid > 0)
			while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
				;
		if (failed) {
			struct child_msg cm = {0};
			closep(&g->err[1]);
			g->p.errpipe_w = -1;
			if (pid < 0)
				log_warn("exec: clone of a prepared sandbox: %s; tasks use fresh ones",
					 strerror(clone_errno));
			else if (read(g->err[0], &cm, sizeof(cm)) == (ssize_t)sizeof(cm))
				log_warn("exec: a prepared sandbox failed while %s: %s; tasks use fresh "
					 "ones", cm.stage > 0 && cm.stage < ST_COUNT ? stage_names[cm.stage]
									   : "?",
					 strerror(cm.err));
		}
		warm_gen_free(sb, g);
		if (failed)
			break;
	}
	warm_park(sb);
	return NULL;
}

/* Takes a prepared child if one is waiting (it is then the caller's), else NULL. */
static struct warm_gen *warm_take(struct exec_sandbox *sb)
{
	struct warm_gen *got = NULL;
	pthread_mutex_lock(&sb->lock);
	for (size_t i = 0; i < sb->n_warm && !got; i++) {
		struct warm_gen *g = sb->warm[i].gen;
		int expect = W_READY;
		if (g && atomic_compare_exchange_strong(&g->state, &expect, W_TAKEN))
			got = g;
	}
	pthread_mutex_unlock(&sb->lock);
	return got;
}

/* Releases a taken generation once its child has been reaped (or never started). */
static void warm_release(struct warm_gen *g)
{
	warm_gen_close(g);
	if (atomic_fetch_sub(&g->refs, 1) == 1)
		free(g);
}

static void warm_start(struct exec_sandbox *sb, unsigned n)
{
	sb->warm = xcalloc(n, sizeof(*sb->warm));
	sb->n_warm = n;
	for (unsigned i = 0; i < n; i++) {
		sb->warm[i].sb = sb;
		if (pthread_create(&sb->warm[i].thread, NULL, warm_main, &sb->warm[i]) == 0)
			sb->warm[i].started = true;
	}
}

/* Cancels every waiting child and joins the slot threads. No exec_run() may be running. */
static void warm_stop(struct exec_sandbox *sb)
{
	if (!sb->n_warm)
		return;
	pthread_mutex_lock(&sb->lock);
	sb->warm_stop = true;
	pthread_cond_broadcast(&sb->warm_cond);
	for (size_t i = 0; i < sb->n_warm; i++) {
		struct warm_gen *g = sb->warm[i].gen;
		if (!g)
			continue;
		int ready = W_READY, preparing = W_PREPARING;
		if (atomic_compare_exchange_strong(&g->state, &ready, W_CANCELLED) ||
		    atomic_compare_exchange_strong(&g->state, &preparing, W_CANCELLED))
			closep(&g->go[1]);
	}
	pthread_mutex_unlock(&sb->lock);
	for (size_t i = 0; i < sb->n_warm; i++)
		if (sb->warm[i].started)
			pthread_join(sb->warm[i].thread, NULL);
	free(sb->warm);
	sb->warm = NULL;
	sb->n_warm = 0;
}

uint64_t exec_sandbox_warm_hits(const struct exec_sandbox *sb)
{
	return atomic_load(&sb->warm_hits);
}

/* Fills the plan's mount paths under root ("" for paths inside the sandbox). */
static void plan_paths(struct plan *p, const struct exec_sandbox *sb, const char *root)
{
	p->ents = sb->ents;
	p->n_ents = sb->n_ents;
	for (size_t i = 0; i < sb->n_ents; i++) {
		p->ent_dst[i] = xasprintf("%s/%s", root, sb->ents[i].name);
		p->ent_src[i] = xasprintf("/%s", sb->ents[i].name);
	}
	p->dev = xasprintf("%s/dev", root);
	p->dev_null = xasprintf("%s/null", p->dev);
	p->dev_zero = xasprintf("%s/zero", p->dev);
	p->dev_full = xasprintf("%s/full", p->dev);
	p->dev_random = xasprintf("%s/random", p->dev);
	p->dev_urandom = xasprintf("%s/urandom", p->dev);
	p->dev_fd = xasprintf("%s/fd", p->dev);
	p->dev_stdin = xasprintf("%s/stdin", p->dev);
	p->dev_stdout = xasprintf("%s/stdout", p->dev);
	p->dev_stderr = xasprintf("%s/stderr", p->dev);
	p->tmp = xasprintf("%s/tmp", root);
	p->in = xasprintf("%s/in", root);
	p->out = xasprintf("%s/out", root);
	p->proc = xasprintf("%s/proc", root);
	p->bundle_dst = xasprintf("%s/bundle", root);
}

/*
 * Builds the template mount namespace once (tmpl_mounts() in a child) and
 * keeps it in sb->tmpl_fd; each task's child enters a copy of it. Returns 0
 * or SS_EIO with the failing step logged.
 */
static int tmpl_build(struct exec_sandbox *sb)
{
	struct plan p;
	int ep[2] = {-1, -1}, sv[2] = {-1, -1}, rc = 0;
	memset(&p, 0, sizeof(p));
	for (int i = 0; i < MAX_CG_FDS; i++)
		p.cg_fds[i] = -1;
	p.bundle_fd = p.tmpl_fd = p.lock_fd = -1;
	p.root = sb->root_mnt;
	plan_paths(&p, sb, sb->root_mnt);
	if (pipe2(ep, O_CLOEXEC) < 0 ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		rc = SS_EIO;
		goto out;
	}
	p.errpipe_w = ep[1];
	p.sock_w = sv[1];
	pid_t pid = clone_vfork(tmpl_entry, SIGCHLD, &p);
	if (pid < 0) {
		log_error("exec: clone for the template mount namespace: %s", strerror(errno));
		rc = SS_EIO;
		goto out;
	}
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
	struct child_msg cm;
	closep(&ep[1]);
	if (read(ep[0], &cm, sizeof(cm)) == (ssize_t)sizeof(cm)) {
		log_error("exec: building the template mount namespace failed while %s: %s",
			  cm.stage > 0 && cm.stage < ST_COUNT ? stage_names[cm.stage] : "?",
			  strerror(cm.err));
		rc = SS_EIO;
		goto out;
	}
	sb->tmpl_fd = recv_fd(sv[0]);
	if (sb->tmpl_fd < 0) {
		log_error("exec: the template mount namespace was not handed over");
		rc = SS_EIO;
	}
out:
	closep(&ep[0]);
	closep(&ep[1]);
	closep(&sv[0]);
	closep(&sv[1]);
	plan_free(&p);
	return rc;
}

static void res_msg(struct exec_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void res_msg(struct exec_result *res, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(res->msg, sizeof(res->msg), fmt, ap);
	va_end(ap);
}

const char *exec_status_name(enum exec_status s)
{
	switch (s) {
	case EXEC_EXITED: return "exited";
	case EXEC_SIGNALED: return "signaled";
	case EXEC_OOM: return "oom";
	case EXEC_TIMEOUT: return "timeout";
	case EXEC_EXEC_ERROR: return "exec_error";
	case EXEC_SETUP_ERROR: return "setup_error";
	case EXEC_OUTPUT_ERROR: return "output_error";
	case EXEC_PIDS_LIMIT: return "pids_limit";
	}
	return "unknown";
}

bool exec_result_ok(const struct exec_result *r)
{
	return r->status == EXEC_EXITED && r->code == 0;
}

static void digests_free(struct exec_file_digest *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(d[i].name);
	free(d);
}

void exec_result_free(struct exec_result *r)
{
	if (!r)
		return;
	digests_free(r->inputs, r->n_inputs);
	digests_free(r->outputs, r->n_outputs);
	buf_free(&r->out);
	buf_free(&r->err_out);
	memset(r, 0, sizeof(*r));
}

/* Copies a host input file into a sealed memfd while hashing it. */
static int stage_input(const struct exec_input *in, int *memfd_out, struct exec_file_digest *d)
{
	int fd = -1, mfd = -1, rc = 0;

	fd = open(in->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		rc = errno == ENOENT ? SS_ENOTFOUND : SS_EIO;
		goto out;
	}
	mfd = memfd_create(in->name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0) {
		rc = SS_EIO;
		goto out;
	}
	if ((rc = exec_digest_fd(fd, mfd, EXEC_MAX_INPUT_BYTES, d->sha256, &d->size)))
		goto out;
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
		rc = SS_EIO;
		goto out;
	}
	*memfd_out = mfd;
	mfd = -1;
out:
	if (fd >= 0)
		close(fd);
	if (mfd >= 0)
		close(mfd);
	return rc;
}

static int recv_fd(int sock)
{
	char data;
	struct iovec iov = {.iov_base = &data, .iov_len = 1};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			     .msg_controllen = sizeof(u.buf)};
	if (recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(sizeof(int)))
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

/*
 * Appends what a pipe has to b, up to cap; the rest is read and dropped. All
 * of it also goes to live (stream 0 or 1) when that is set. Returns 0 at EOF.
 */
static int drain(int fd, struct buf *b, size_t cap, bool *truncated, struct exec_live *live,
		 int stream)
{
	char chunk[16384];
	ssize_t n = read(fd, chunk, sizeof(chunk));
	if (n < 0)
		return (errno == EAGAIN || errno == EINTR) ? 1 : 0;
	if (n == 0)
		return 0;
	size_t keep = b->len < cap ? cap - b->len : 0;
	if ((size_t)n > keep)
		*truncated = true;
	buf_append(b, chunk, (size_t)n < keep ? (size_t)n : keep);
	exec_live_append(live, stream, chunk, (size_t)n);
	return 1;
}

/* ---- outputs ----------------------------------------------------------- */

struct outctx {
	int srcdir;
	int dstdir; /* -1 when not copying */
	uint64_t budget;
	struct exec_result *res;
	size_t cap_n;
};

static int open_beneath(int dirfd, const char *path, int flags)
{
	struct open_how how = {.flags = (uint64_t)(flags | O_NOFOLLOW | O_CLOEXEC),
			       .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
					  RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV};
	return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

/* Creates the parent directories of rel below dirfd. */
static int mkdirs_beneath(int dirfd, const char *rel)
{
	char tmp[EXEC_PATH_MAX + 1];
	snprintf(tmp, sizeof(tmp), "%s", rel);
	for (char *s = strchr(tmp, '/'); s; s = strchr(s + 1, '/')) {
		*s = '\0';
		if (mkdirat(dirfd, tmp, 0755) < 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return 0;
}

static int take_output(struct outctx *o, const char *rel)
{
	struct exec_result *res = o->res;
	struct stat st;
	int fd = -1, dfd = -1, rc = 0;
	uint8_t sha[SHA256_LEN];
	uint64_t total = 0;

	fd = open_beneath(o->srcdir, rel, O_RDONLY | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (errno == ELOOP || errno == EXDEV)
			res_msg(res, "output '%s' is a symbolic link; refused", rel);
		else if (errno == ENOENT)
			res_msg(res, "declared output '%s' is missing", rel);
		else
			res_msg(res, "output '%s': %s", rel, strerror(errno));
		rc = SS_EPOLICY;
		goto out;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		res_msg(res, "output '%s' is not a regular file; refused", rel);
		rc = SS_EPOLICY;
		goto out;
	}
	if ((uint64_t)st.st_size > o->budget) {
		res_msg(res, "outputs exceed the output cap at '%s' (%" PRIu64 " bytes left)", rel,
			o->budget);
		rc = SS_ELIMIT;
		goto out;
	}
	if (res->n_outputs >= EXEC_MAX_OUTPUTS) {
		res_msg(res, "more than %d outputs", EXEC_MAX_OUTPUTS);
		rc = SS_ELIMIT;
		goto out;
	}
	if (o->dstdir >= 0) {
		if (mkdirs_beneath(o->dstdir, rel) < 0 ||
		    (dfd = openat(o->dstdir, rel, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
				  0644)) < 0) {
			res_msg(res, "cannot write output '%s' to the output directory: %s", rel,
				strerror(errno));
			rc = SS_EIO;
			goto out;
		}
	}
	rc = exec_digest_fd(fd, dfd, o->budget, sha, &total);
	if (rc == SS_ETOOBIG) {
		res_msg(res, "outputs exceed the cap at '%s'", rel);
		rc = SS_ELIMIT;
	}
	if (rc)
		goto out;
	o->budget -= total;
	struct exec_file_digest *d;
	res->outputs = xrealloc(res->outputs, (res->n_outputs + 1) * sizeof(*res->outputs));
	d = &res->outputs[res->n_outputs++];
	d->name = xstrdup(rel);
	d->size = total;
	memcpy(d->sha256, sha, SHA256_LEN);
out:
	if (fd >= 0)
		close(fd);
	if (dfd >= 0)
		close(dfd);
	return rc;
}

/* Collects every regular file below rel (a directory); anything else is refused. */
static int walk_outputs(struct outctx *o, const char *rel, int depth)
{
	int rc = 0;
	if (depth > OUT_MAX_DEPTH) {
		res_msg(o->res, "output tree deeper than %d", OUT_MAX_DEPTH);
		return SS_ELIMIT;
	}
	int fd = rel[0] ? open_beneath(o->srcdir, rel, O_RDONLY | O_DIRECTORY)
			: fcntl(o->srcdir, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return SS_EIO;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return SS_EIO;
	}
	/* Rewind: a duplicated fd shares its offset with srcdir. */
	rewinddir(d);
	struct dirent *de;
	while (!rc && (de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *sub = rel[0] ? xasprintf("%s/%s", rel, de->d_name) : xstrdup(de->d_name);
		struct stat st;
		if (!exec_relpath_valid(sub)) {
			res_msg(o->res, "output name '%.64s' is not allowed", sub);
			rc = SS_EPOLICY;
		} else if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
			rc = SS_EIO;
		} else if (S_ISDIR(st.st_mode)) {
			rc = walk_outputs(o, sub, depth + 1);
		} else if (S_ISREG(st.st_mode)) {
			rc = take_output(o, sub);
		} else {
			res_msg(o->res, "output '%s' is %s; refused", sub,
				S_ISLNK(st.st_mode) ? "a symbolic link" : "not a regular file");
			rc = SS_EPOLICY;
		}
		free(sub);
	}
	closedir(d);
	return rc;
}

static int digest_cmp(const void *a, const void *b)
{
	return strcmp(((const struct exec_file_digest *)a)->name,
		      ((const struct exec_file_digest *)b)->name);
}

static int collect_outputs(const struct exec_spec *spec, int outfd, const char *out_dir,
			   struct exec_result *res)
{
	struct outctx o = {.srcdir = outfd, .dstdir = -1, .budget = spec->res.output_bytes, .res = res};
	int rc = 0;
	if (out_dir) {
		o.dstdir = open(out_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (o.dstdir < 0) {
			res_msg(res, "cannot open the output directory %s: %s", out_dir, strerror(errno));
			return SS_EIO;
		}
	}
	if (spec->n_outputs) {
		for (size_t i = 0; i < spec->n_outputs && !rc; i++)
			rc = take_output(&o, spec->outputs[i]);
	} else {
		rc = walk_outputs(&o, "", 0);
	}
	/* A full /out means the task hit the cap and its outputs may be cut short. */
	struct statfs sf;
	if (!rc && fstatfs(outfd, &sf) == 0 && sf.f_blocks > 0 && sf.f_bavail == 0) {
		res_msg(res, "outputs reached the %" PRIu64 "-byte cap", spec->res.output_bytes);
		rc = SS_ELIMIT;
	}
	if (o.dstdir >= 0)
		close(o.dstdir);
	if (res->n_outputs > 1)
		qsort(res->outputs, res->n_outputs, sizeof(*res->outputs), digest_cmp);
	return rc;
}

/* ---- cgroup pool ------------------------------------------------------- */

static int cgroup_get(struct exec_sandbox *sb, struct exec_cgroup **out)
{
	pthread_mutex_lock(&sb->lock);
	if (sb->n_pool) {
		*out = sb->pool[--sb->n_pool];
		pthread_mutex_unlock(&sb->lock);
		return 0;
	}
	unsigned long seq = ++sb->seq;
	pthread_mutex_unlock(&sb->lock);
	char name[64];
	snprintf(name, sizeof(name), "seeswarm-task-%ld-%lu", (long)getpid(), seq);
	return exec_cgroup_create(out, sb->cg_mode, name);
}

static void cgroup_put(struct exec_sandbox *sb, struct exec_cgroup *cg)
{
	if (!cg)
		return;
	if (!exec_cgroup_empty(cg)) {
		exec_cgroup_kill(cg);
		if (!exec_cgroup_empty(cg)) {
			log_warn("exec: a task cgroup is not empty after kill; leaking it");
			return;
		}
	}
	/* v2 peak memory cannot be reset portably, so v2 cgroups are not reused. */
	pthread_mutex_lock(&sb->lock);
	if (sb->cg_mode == EXEC_CG_V1 && sb->n_pool < POOL_MAX) {
		sb->pool[sb->n_pool++] = cg;
		cg = NULL;
	}
	pthread_mutex_unlock(&sb->lock);
	exec_cgroup_destroy(cg);
}

/* ---- cancellation ------------------------------------------------------ */

/*
 * The token is an eventfd that becomes (and stays) readable when triggered,
 * so exec_run() polls it beside the task's pipes, plus a flag checked before
 * the clone.
 */
struct exec_cancel {
	int efd;
	atomic_bool fired;
};

int exec_cancel_new(struct exec_cancel **out)
{
	struct exec_cancel *c = xcalloc(1, sizeof(*c));
	*out = NULL;
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0) {
		free(c);
		return SS_EIO;
	}
	atomic_init(&c->fired, false);
	*out = c;
	return 0;
}

void exec_cancel_trigger(struct exec_cancel *c)
{
	uint64_t one = 1;
	if (atomic_exchange(&c->fired, true))
		return;
	ssize_t n = write(c->efd, &one, sizeof(one));
	(void)n; /* cannot fail short of a counter overflow, and the flag is already set */
}

bool exec_cancel_triggered(struct exec_cancel *c)
{
	return atomic_load(&c->fired);
}

void exec_cancel_free(struct exec_cancel *c)
{
	if (!c)
		return;
	close(c->efd);
	free(c);
}

static void res_cancelled(struct exec_result *res)
{
	res->status = EXEC_SIGNALED;
	res->code = SIGKILL;
	res_msg(res, "cancelled");
}

/* ---- exec_run ---------------------------------------------------------- */

static void plan_free(struct plan *p)
{
	for (size_t i = 0; i < MAX_ROOT_ENTS; i++) {
		free(p->ent_dst[i]);
		free(p->ent_src[i]);
	}
	char **strs[] = {&p->dev, &p->tmp, &p->in, &p->out, &p->proc, &p->bundle_dst,
			 &p->dev_null, &p->dev_zero, &p->dev_full, &p->dev_random, &p->dev_urandom,
			 &p->dev_fd, &p->dev_stdin, &p->dev_stdout, &p->dev_stderr,
			 &p->tmp_opts, &p->out_opts, &p->in_opts};
	for (size_t i = 0; i < ARRAY_LEN(strs); i++)
		free(*strs[i]);
	for (size_t i = 0; i < p->n_in; i++) {
		free(p->in_dst[i]);
		if (p->in_fds[i] >= 0)
			close(p->in_fds[i]);
	}
	free(p->in_dst);
	free(p->in_fds);
	for (size_t i = 0; i < p->n_cand; i++)
		free(p->cand[i]);
	free(p->cand);
	if (p->bundle_fd >= 0)
		close(p->bundle_fd);
}

static bool env_has(const struct exec_spec *spec, const char *key)
{
	size_t kl = strlen(key);
	for (size_t i = 0; i < spec->envc; i++)
		if (!strncmp(spec->env[i], key, kl) && spec->env[i][kl] == '=')
			return true;
	return false;
}


int exec_run(struct exec_sandbox *sb, const struct exec_spec *spec, const char *bundle_dir,
	     const char *out_dir, struct exec_result *res)
{
	struct plan p_cold;
	struct plan *pp = &p_cold;
	struct warm_gen *g = NULL; /* a prepared child, when one was waiting */
	bool launched = false;
	struct exec_cgroup *cg = NULL;
	char **envp = NULL;
	size_t n_env = 0;
	int outp[2] = {-1, -1}, errp[2] = {-1, -1}, ep[2] = {-1, -1}, sv[2] = {-1, -1};
	int pidfd = -1, outfd = -1, mntns = -1, lockfd = -1;
	pid_t pid = -1;
	uint64_t input_total = 0;
	char why[160];
	int rc = 0;

	memset(res, 0, sizeof(*res));
	memset(pp, 0, sizeof(*pp));
	buf_init(&res->out);
	buf_init(&res->err_out);
	for (int i = 0; i < MAX_CG_FDS; i++)
		pp->cg_fds[i] = -1;
	pp->bundle_fd = pp->tmpl_fd = pp->lock_fd = -1;

	if ((rc = exec_spec_validate(spec, why, sizeof(why)))) {
		res_msg(res, "invalid task: %s", why);
		goto out;
	}
	/* Measurement: the code identity, checked before anything runs. */
	if ((rc = exec_bundle_digest(bundle_dir, res->code_digest, NULL))) {
		res_msg(res, "bundle %s: %s", bundle_dir, ss_strerror(rc));
		goto out;
	}
	if (spec->has_bundle_digest && !ct_equal(spec->bundle_digest, res->code_digest, SHA256_LEN)) {
		res_msg(res, "bundle digest does not match the task's bundle_digest");
		rc = SS_EPOLICY;
		goto out;
	}
	if (sb->n_allow) {
		bool ok = false;
		for (size_t i = 0; i < sb->n_allow; i++)
			ok |= ct_equal(sb->allow[i], res->code_digest, SHA256_LEN);
		if (!ok) {
			res_msg(res, "bundle digest is not on the allow-list");
			rc = SS_EPOLICY;
			goto out;
		}
	}

	/* Inputs: hashed while copied into sealed memfds, so the task reads what was measured. */
	pp->n_in = spec->n_inputs;
	pp->in_fds = xcalloc(pp->n_in ? pp->n_in : 1, sizeof(int));
	pp->in_dst = xcalloc(pp->n_in ? pp->n_in : 1, sizeof(char *));
	res->inputs = xcalloc(pp->n_in ? pp->n_in : 1, sizeof(*res->inputs));
	for (size_t i = 0; i < pp->n_in; i++)
		pp->in_fds[i] = -1;
	for (size_t i = 0; i < pp->n_in; i++) {
		const struct exec_input *in = &spec->inputs[i];
		struct exec_file_digest *d = &res->inputs[i];
		d->name = xstrdup(in->name);
		res->n_inputs = i + 1;
		if ((rc = stage_input(in, &pp->in_fds[i], d))) {
			res_msg(res, "input '%s' (%s): %s", in->name, in->path, ss_strerror(rc));
			goto out;
		}
		if (in->has_expect && !ct_equal(in->expect, d->sha256, SHA256_LEN)) {
			res_msg(res, "input '%s' does not match its expected digest", in->name);
			rc = SS_EPOLICY;
			goto out;
		}
		input_total += d->size;
		pp->in_dst[i] = xasprintf("/in/%s", in->name);
	}

	/* A prepared child if one waits (not for tasks on the host network); it brings its cgroup. */
	if (sb->n_warm && !spec->network && (g = warm_take(sb))) {
		g->p.n_in = pp->n_in;
		g->p.in_fds = pp->in_fds;
		g->p.in_dst = pp->in_dst;
		pp->n_in = 0;
		pp->in_fds = NULL;
		pp->in_dst = NULL;
		pp = &g->p;
		cg = g->cg;
		g->cg = NULL;
		atomic_fetch_add(&sb->warm_hits, 1);
	}

	/* The cgroup: a prepared child is in one already; a fresh child joins one through fds. */
	if (!g && sb->cg_mode != EXEC_CG_NONE) {
		if ((rc = cgroup_get(sb, &cg))) {
			res_msg(res, "cannot prepare the task cgroup: %s", ss_strerror(rc));
			goto out;
		}
		int n = exec_cgroup_join_fds(cg, pp->cg_fds, MAX_CG_FDS);
		if (n < 0) {
			rc = n;
			res_msg(res, "cannot open the task cgroup: %s", ss_strerror(rc));
			goto out;
		}
		pp->n_cg = n;
	}
	if (cg) {
		if ((rc = exec_cgroup_set_limits(cg, &spec->res)) || (rc = exec_cgroup_begin(cg))) {
			res_msg(res, "cannot prepare the task cgroup: %s", ss_strerror(rc));
			goto out;
		}
	} else {
		pp->as = spec->res.memory_bytes;
	}

	/* The child's plan: every string it will need. */
	if (!g) {
		plan_paths(pp, sb, "");
		plan_identity(pp, sb);
	}
	pp->tmpl_fd = sb->tmpl_fd;
	/* The bundle: a detached read-only copy of its tree, which the child attaches. */
	pp->bundle_fd = (int)syscall(SYS_open_tree, AT_FDCWD, bundle_dir,
				   OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	struct mount_attr ma = {.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV};
	if (pp->bundle_fd < 0 ||
	    syscall(SYS_mount_setattr, pp->bundle_fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &ma,
		    sizeof(ma)) < 0) {
		rc = SS_EIO;
		res_msg(res, "cannot mount the bundle %s: %s", bundle_dir, strerror(errno));
		goto out;
	}
	pp->tmp_opts = xasprintf("size=%" PRIu64 ",nr_inodes=16384,mode=1777,uid=0,gid=0",
			       spec->res.disk_bytes);
	/* uid and gid 0 of the task's user namespace: the sandbox uid and gid. */
	pp->out_opts = xasprintf("size=%" PRIu64 ",nr_inodes=%d,mode=0755,uid=0,gid=0",
			       spec->res.output_bytes, 4 * EXEC_MAX_OUTPUTS);
	pp->in_opts = xasprintf("size=%" PRIu64 ",nr_inodes=%zu,mode=0755",
			      input_total + 65536 * (pp->n_in + 1), pp->n_in + 16);
	pp->ll_abi = sb->ll_abi;
	pp->network = spec->network;
	pp->bpf = sb->bpf;
	pp->fsize = (rlim_t)(spec->res.output_bytes > spec->res.disk_bytes ? spec->res.output_bytes
									: spec->res.disk_bytes);
	pp->nofile = 1024;
	pp->cpu_s = (rlim_t)(spec->res.timeout_ms / 1000 + 2);
	pp->cwd = spec->cwd ? spec->cwd : "/bundle";
	pp->argv = spec->argv;
	if (strchr(spec->argv[0], '/')) {
		pp->cand = xcalloc(1, sizeof(char *));
		pp->cand[pp->n_cand++] = xstrdup(spec->argv[0]);
	} else {
		static const char *const dirs[] = {"/bundle", "/usr/local/bin", "/usr/bin", "/bin",
						   "/usr/sbin", "/sbin"};
		pp->cand = xcalloc(ARRAY_LEN(dirs), sizeof(char *));
		for (size_t i = 0; i < ARRAY_LEN(dirs); i++)
			pp->cand[pp->n_cand++] = xasprintf("%s/%s", dirs[i], spec->argv[0]);
	}
	envp = xcalloc(spec->envc + 4, sizeof(char *));
	for (size_t i = 0; i < spec->envc; i++)
		envp[n_env++] = spec->env[i];
	if (!env_has(spec, "PATH"))
		envp[n_env++] = "PATH=/bundle:/usr/local/bin:/usr/bin:/bin";
	if (!env_has(spec, "HOME"))
		envp[n_env++] = "HOME=/tmp";
	if (!env_has(spec, "TMPDIR"))
		envp[n_env++] = "TMPDIR=/tmp";
	envp[n_env] = NULL;
	pp->envp = envp;

	pp->no_out = spec->no_out;
	if (pipe2(outp, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0 ||
	    (!spec->no_out && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)) {
		rc = SS_EIO;
		res_msg(res, "pipe: %s", strerror(errno));
		goto out;
	}
	pp->out_w = outp[1];
	pp->err_w = errp[1];
	pp->errpipe_w = ep[1];
	pp->sock_w = sv[1];
	/* A fresh child's own description of the id-map lock (a prepared one has its own). */
	if (!g) {
		lockfd = open(idlock_path, O_RDWR | O_CLOEXEC);
		if (lockfd < 0) {
			rc = SS_EIO;
			res_msg(res, "cannot open the id-map lock: %s", strerror(errno));
			goto out;
		}
		pp->lock_fd = lockfd;
	}

	/* Checked before entering the shared netns, which a goto out would not leave. */
	if (spec->cancel && exec_cancel_triggered(spec->cancel)) {
		res->start_ms = res->end_ms = time_wall_ms();
		res_cancelled(res);
		goto out;
	}
	uint64_t t0 = time_mono_ms();
	struct timespec ts0;
	clock_gettime(CLOCK_MONOTONIC, &ts0);
	res->start_ms = time_wall_ms();
	if (g) {
		/* Go, then wait until the child has its own copy of the descriptor table (or died). */
		pid = g->tid;
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (write(g->go[1], "g", 1) != 1) {
			rc = SS_EIO;
			res_msg(res, "cannot start the prepared sandbox: %s", strerror(errno));
			pid = -1;
			goto out;
		}
		launched = true;
		for (uint64_t until = time_mono_ms() + WARM_ACK_MS; time_mono_ms() < until;) {
			struct pollfd af[2] = {{.fd = g->ack[0], .events = POLLIN},
					       {.fd = pidfd, .events = POLLIN}};
			int n = poll(af, pidfd >= 0 ? 2 : 1, 100);
			if (n > 0 && (af[0].revents || (pidfd >= 0 && af[1].revents)))
				break;
		}
	} else {
		unsigned long flags = CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD;
		bool in_shared = false;
		if (!spec->network) {
			if (sb->shared_netns) {
				if (setns(sb->netns_fd, CLONE_NEWNET) < 0) {
					rc = SS_EIO;
					res_msg(res, "setns: %s", strerror(errno));
					goto out;
				}
				in_shared = true;
			} else {
				flags |= CLONE_NEWNET;
			}
		}
		pid = clone_vfork(child_entry, flags, pp);
		int clone_errno = errno;
		if (in_shared && setns(sb->host_netns_fd, CLONE_NEWNET) < 0)
			fatal("exec: cannot return to the host network namespace: %s", strerror(errno));
		if (pid < 0) {
			rc = SS_EIO;
			res_msg(res, "clone: %s", strerror(clone_errno));
			goto out;
		}
}
	closep(&outp[1]);
	closep(&errp[1]);
	closep(&ep[1]);
	closep(&sv[1]);
	closep(&lockfd); /* the child has its copy (or has execed or died) */
	if (pidfd < 0)
		pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	/*
	 * A reference to the task's mount namespace, so that tearing it down
	 * falls to the reaper rather than to the task's exit. A task that has
	 * already exited took its namespace with it; nothing is lost then.
	 */
	char nspath[48];
	snprintf(nspath, sizeof(nspath), "/proc/%d/ns/mnt", (int)pid);
	mntns = open(nspath, O_RDONLY | O_CLOEXEC);

	/* Wait for exit or the deadline, capturing output and the exec report. */
	struct child_msg cm = {0};
	size_t cm_got = 0;
	bool out_open = true, err_open = true, ep_open = true, exited = false, timed_out = false;
	bool cancelled = false;
	uint64_t deadline = t0 + spec->res.timeout_ms, drain_deadline = 0;
	fcntl(outp[0], F_SETFL, O_NONBLOCK);
	fcntl(errp[0], F_SETFL, O_NONBLOCK);
	while (out_open || err_open || ep_open || !exited) {
		struct pollfd pf[5];
		int np = 0, i_out = -1, i_err = -1, i_ep = -1, i_pid = -1, i_cancel = -1;
		if (out_open) {
			i_out = np;
			pf[np++] = (struct pollfd){.fd = outp[0], .events = POLLIN};
		}
		if (err_open) {
			i_err = np;
			pf[np++] = (struct pollfd){.fd = errp[0], .events = POLLIN};
		}
		if (ep_open) {
			i_ep = np;
			pf[np++] = (struct pollfd){.fd = ep[0], .events = POLLIN};
		}
		if (!exited && pidfd >= 0) {
			i_pid = np;
			pf[np++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
		}
		if (!exited && !cancelled && !timed_out && spec->cancel) {
			i_cancel = np;
			pf[np++] = (struct pollfd){.fd = spec->cancel->efd, .events = POLLIN};
		}
		uint64_t now = time_mono_ms();
		uint64_t until = exited ? drain_deadline : deadline;
		int wait_ms = now >= until ? 0 : (int)(until - now > 1000 ? 1000 : until - now);
		if (!exited && pidfd < 0 && wait_ms > 10)
			wait_ms = 10; /* no pidfd: poll for the exit */
		int n = poll(pf, (nfds_t)np, wait_ms);
		if (n < 0 && errno != EINTR) {
			rc = SS_EIO;
			break;
		}
		if (i_out >= 0 && pf[i_out].revents)
			out_open = drain(outp[0], &res->out, sb->capture, &res->out_truncated, spec->live, 0);
		if (i_err >= 0 && pf[i_err].revents)
			err_open = drain(errp[0], &res->err_out, sb->capture, &res->err_truncated, spec->live,
					 1);
		if (i_ep >= 0 && pf[i_ep].revents) {
			ssize_t r = read(ep[0], (char *)&cm + cm_got, sizeof(cm) - cm_got);
			if (r > 0)
				cm_got += (size_t)r;
			else if (r == 0 || errno != EINTR)
				ep_open = false;
			if (cm_got == sizeof(cm))
				ep_open = false;
		}
		if (i_cancel >= 0 && pf[i_cancel].revents && !exited) {
			cancelled = true;
			if (spec->res.kill_grace_ms) {
				/*
				 * SIGTERM first. The task is the pid namespace's init,
				 * which gets only the signals it catches: one that
				 * does not is killed when the grace runs out.
				 */
				kill(pid, SIGTERM);
				deadline = time_mono_ms() + spec->res.kill_grace_ms;
			} else {
				kill(pid, SIGKILL); /* init of the pid namespace: the tree goes with it */
				if (cg)
					exec_cgroup_kill(cg);
				deadline = UINT64_MAX;
			}
		}
		if (!exited) {
			bool gone = i_pid >= 0 && pf[i_pid].revents;
			if (pidfd < 0) {
				siginfo_t si;
				memset(&si, 0, sizeof(si));
				gone = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
				       si.si_pid == pid;
			}
			if (gone) {
				exited = true;
				/* The namespace is gone; whatever still holds a pipe gets 200 ms. */
				drain_deadline = time_mono_ms() + 200;
			} else if (time_mono_ms() >= deadline) {
				timed_out = !cancelled; /* else the cancel's grace ran out */
				kill(pid, SIGKILL); /* init of the pid namespace: the tree goes with it */
				if (cg)
					exec_cgroup_kill(cg);
				deadline = UINT64_MAX;
			}
		} else if (time_mono_ms() >= drain_deadline) {
			break;
		}
	}
	int status = 0;
	struct rusage ru;
	memset(&ru, 0, sizeof(ru));
	while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
		;
	pid = -1;
	struct timespec ts1;
	clock_gettime(CLOCK_MONOTONIC, &ts1);
	res->end_ms = time_wall_ms();
	res->usage.wall_ms = (uint64_t)((ts1.tv_sec - ts0.tv_sec) * 1000 +
					(ts1.tv_nsec - ts0.tv_nsec) / 1000000);
	if (cg) {
		exec_cgroup_usage(cg, &res->usage);
	} else {
		res->usage.cpu_ns = ((uint64_t)ru.ru_utime.tv_sec + (uint64_t)ru.ru_stime.tv_sec) *
					    1000000000ULL +
				    ((uint64_t)ru.ru_utime.tv_usec + (uint64_t)ru.ru_stime.tv_usec) * 1000ULL;
		res->usage.peak_mem_bytes = (uint64_t)ru.ru_maxrss * 1024;
	}

	if (cm_got == sizeof(cm)) {
		res->err = cm.err;
		if (cm.stage == ST_EXEC) {
			res->status = EXEC_EXEC_ERROR;
			res_msg(res, "cannot execute '%s': %s", spec->argv[0], strerror(cm.err));
		} else {
			res->status = EXEC_SETUP_ERROR;
			res_msg(res, "sandbox setup failed while %s: %s",
				cm.stage > 0 && cm.stage < ST_COUNT ? stage_names[cm.stage] : "?",
				strerror(cm.err));
		}
		res->code = 127;
		goto out;
	}
	if (cancelled) {
		res_cancelled(res);
		/* Within a grace, how it ended: its own exit status, or the signal. */
		if (spec->res.kill_grace_ms)
			res->code = WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status);
		goto out;
	}
	if (timed_out) {
		res->status = EXEC_TIMEOUT;
		res->code = SIGKILL;
		res_msg(res, "killed after the %" PRIu64 " ms timeout", spec->res.timeout_ms);
	} else if (WIFSIGNALED(status)) {
		res->code = WTERMSIG(status);
		if (res->usage.oom_kills && res->code == SIGKILL) {
			res->status = EXEC_OOM;
			res_msg(res, "killed by the OOM killer at the %" PRIu64 "-byte memory limit",
				spec->res.memory_bytes);
		} else {
			res->status = EXEC_SIGNALED;
			res_msg(res, "killed by signal %d (%s)", res->code, strsignal(res->code));
		}
	} else {
		res->status = EXEC_EXITED;
		res->code = WEXITSTATUS(status);
		res_msg(res, "exited with status %d", res->code);
	}
	if (res->usage.pids_limit_hit && res->status == EXEC_EXITED && res->code == 0)
		res->status = EXEC_PIDS_LIMIT;
	if (res->usage.pids_limit_hit)
		snprintf(res->msg + strlen(res->msg), sizeof(res->msg) - strlen(res->msg),
			 "; the pids limit (%u) was hit", spec->res.pids);

	/* Outputs. */
	if (spec->no_out)
		goto out;
	outfd = recv_fd(sv[0]);
	if (outfd < 0) {
		res->status = EXEC_OUTPUT_ERROR;
		res_msg(res, "the sandbox did not hand over /out");
		goto out;
	}
	char keep[sizeof(res->msg)];
	memcpy(keep, res->msg, sizeof(keep));
	int orc = collect_outputs(spec, outfd, out_dir, res);
	if (orc) {
		if (exec_result_ok(res))
			res->status = EXEC_OUTPUT_ERROR;
		if (!res->msg[0] || !strcmp(res->msg, keep))
			res_msg(res, "outputs refused: %s", ss_strerror(orc));
		else if (res->status != EXEC_OUTPUT_ERROR) {
			char extra[sizeof(res->msg)];
			memcpy(extra, res->msg, sizeof(extra));
			res_msg(res, "%.120s; %.120s", keep, extra);
		}
	}
out:
	if (g && !launched) {
		/* Taken but never started: closing go ends the child. */
		closep(&g->go[1]);
		while (waitpid(g->tid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	closep(&pidfd);
	closep(&outfd);
	closep(&outp[0]);
	closep(&outp[1]);
	closep(&errp[0]);
	closep(&errp[1]);
	closep(&ep[0]);
	closep(&ep[1]);
	closep(&sv[0]);
	closep(&sv[1]);
	closep(&lockfd);
	plan_free(&p_cold);
	if (g)
		warm_release(g);
	free(envp);
	reap_later(sb, mntns, cg);
	return rc;
}

/* ---- resource manager -------------------------------------------------- */

struct exec_capacity {
	pthread_mutex_t lock;
	uint32_t cpu_total, cpu_used;
	uint64_t mem_total, mem_used;
	uint32_t pids_total, pids_used;
	uint32_t tasks_total, tasks_used;
};

struct exec_capacity *exec_capacity_new(uint32_t cpu_millicores, uint64_t memory_bytes,
					uint32_t pids, uint32_t max_tasks)
{
	struct exec_capacity *c = xcalloc(1, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	c->cpu_total = cpu_millicores;
	c->mem_total = memory_bytes;
	c->pids_total = pids;
	c->tasks_total = max_tasks;
	return c;
}

void exec_capacity_free(struct exec_capacity *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c);
}

int exec_capacity_admit(struct exec_capacity *c, const struct exec_resources *r, char *why,
			size_t whylen)
{
	int rc = 0;
	pthread_mutex_lock(&c->lock);
	if (c->tasks_used >= c->tasks_total) {
		snprintf(why, whylen, "no task slot free (%u of %u in use)", c->tasks_used,
			 c->tasks_total);
		rc = SS_ELIMIT;
	} else if (r->cpu_millicores > c->cpu_total - c->cpu_used) {
		snprintf(why, whylen, "needs %u CPU millicores, %u of %u left", r->cpu_millicores,
			 c->cpu_total - c->cpu_used, c->cpu_total);
		rc = SS_ELIMIT;
	} else if (r->memory_bytes > c->mem_total - c->mem_used) {
		snprintf(why, whylen, "needs %" PRIu64 " bytes of memory, %" PRIu64 " of %" PRIu64
				      " left", r->memory_bytes, c->mem_total - c->mem_used, c->mem_total);
		rc = SS_ELIMIT;
	} else if (r->pids > c->pids_total - c->pids_used) {
		snprintf(why, whylen, "needs %u pids, %u of %u left", r->pids,
			 c->pids_total - c->pids_used, c->pids_total);
		rc = SS_ELIMIT;
	} else {
		c->tasks_used++;
		c->cpu_used += r->cpu_millicores;
		c->mem_used += r->memory_bytes;
		c->pids_used += r->pids;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void exec_capacity_release(struct exec_capacity *c, const struct exec_resources *r)
{
	pthread_mutex_lock(&c->lock);
	if (c->tasks_used == 0 || c->cpu_used < r->cpu_millicores || c->mem_used < r->memory_bytes ||
	    c->pids_used < r->pids)
		fatal("exec_capacity_release without a matching admit");
	c->tasks_used--;
	c->cpu_used -= r->cpu_millicores;
	c->mem_used -= r->memory_bytes;
	c->pids_used -= r->pids;
	pthread_mutex_unlock(&c->lock);
}

void exec_capacity_report(struct exec_capacity *c, char *out, size_t outlen)
{
	pthread_mutex_lock(&c->lock);
	snprintf(out, outlen,
		 "cpu=%u/%um mem=%" PRIu64 "/%" PRIu64 " pids=%u/%u tasks=%u/%u", c->cpu_used,
		 c->cpu_total, c->mem_used, c->mem_total, c->pids_used, c->pids_total,
		 c->tasks_used, c->tasks_total);
	pthread_mutex_unlock(&c->lock);
}
