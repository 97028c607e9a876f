/*
 * landlock.c - filesystem, TCP and IPC-scope restrictions with Landlock.
 *
 * The sandbox's mount layout already makes the root read-only; Landlock
 * adds a second, independent check that holds even if a mount were
 * writable: writes are allowed only below the rw directories (/tmp, /out)
 * and to /dev/null. From ABI 4 it also refuses TCP bind and connect when the
 * task has no network, and from ABI 6 it keeps abstract unix sockets and
 * signals inside the task's own Landlock domain.
 *
 * The constants are defined here because the installed UAPI header may be
 * older than the running kernel.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent/exec/exec.h"

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1

#define LL_FS_EXECUTE (1ULL << 0)
#define LL_FS_WRITE_FILE (1ULL << 1)
#define LL_FS_READ_FILE (1ULL << 2)
#define LL_FS_READ_DIR (1ULL << 3)
#define LL_FS_TRUNCATE (1ULL << 14)
#define LL_FS_IOCTL_DEV (1ULL << 15)
#define LL_NET_BIND_TCP (1ULL << 0)
#define LL_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)

struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

struct ll_path_beneath_attr {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));

int exec_landlock_abi(void)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
	return abi < 0 ? 0 : (int)abi;
}

static uint64_t fs_mask(int abi)
{
	uint64_t m = (1ULL << 13) - 1; /* ABI 1: EXECUTE .. MAKE_SYM */
	if (abi >= 2)
		m |= 1ULL << 13; /* REFER */
	if (abi >= 3)
		m |= LL_FS_TRUNCATE;
	if (abi >= 5)
		m |= LL_FS_IOCTL_DEV;
	return m;
}

static int add_path(int ruleset, const char *path, uint64_t access)
{
	struct ll_path_beneath_attr pb = {.allowed_access = access};
	int rc = 0;
	pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
	if (pb.parent_fd < 0)
		return -errno;
	if (syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0) < 0)
		rc = -errno;
	close(pb.parent_fd);
	return rc;
}

int exec_landlock_apply(int abi, const char *const *rw_dirs, bool network)
{
	struct ll_ruleset_attr attr = {0};
	size_t size = sizeof(uint64_t);
	int rc = 0;

	if (abi < 1)
		return -ENOSYS;
	uint64_t all = fs_mask(abi);
	attr.handled_access_fs = all;
	if (abi >= 4) {
		size = 2 * sizeof(uint64_t);
		if (!network)
			attr.handled_access_net = LL_NET_BIND_TCP | LL_NET_CONNECT_TCP;
	}
	if (abi >= 6) {
		size = sizeof(attr);
		attr.scoped = LL_SCOPE_ABSTRACT_UNIX | LL_SCOPE_SIGNAL;
	}
	int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
	if (fd < 0)
		return -errno;
	uint64_t file_rw = LL_FS_READ_FILE | LL_FS_WRITE_FILE;
	if (abi >= 3)
		file_rw |= LL_FS_TRUNCATE;
	if (abi >= 5)
		file_rw |= LL_FS_IOCTL_DEV;
	if ((rc = add_path(fd, "/", LL_FS_EXECUTE | LL_FS_READ_FILE | LL_FS_READ_DIR)))
		goto out;
	for (size_t i = 0; rw_dirs && rw_dirs[i]; i++)
		if ((rc = add_path(fd, rw_dirs[i], all)))
			goto out;
	if ((rc = add_path(fd, "/dev/null", file_rw)))
		goto out;
	if (syscall(SYS_landlock_restrict_self, fd, 0) < 0)
		rc = -errno;
out:
	close(fd);
	return rc;
}
