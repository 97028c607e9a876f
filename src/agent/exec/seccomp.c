/*
 * seccomp.c - the task's system-call filter, built once with libseccomp and
 * exported as classic BPF so that each sandboxed child loads it with a
 * single system call and no allocation.
 *
 * The filter allows by default and denies, with EPERM, the calls a task has
 * no business making: mounting and pivoting, tracing other processes, BPF,
 * kexec and module loading, the kernel keyring, perf events, userfaultfd,
 * new namespaces (unshare, setns, clone with CLONE_NEW*), setting the clock,
 * reboot, swap, handle-based opens, io_uring and a few legacy calls.
 * clone3 fails with ENOSYS so that libc falls back to clone, whose flags the
 * filter can inspect. System calls of other architectures (i386, x32) kill
 * the process.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <seccomp.h>

#include "agent/exec/exec.h"

static const char *const denied[] = {
	"mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree",
	"fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
	"ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
	"bpf", "kexec_load", "kexec_file_load",
	"init_module", "finit_module", "delete_module", "create_module", "query_module",
	"get_kernel_syms",
	"keyctl", "add_key", "request_key",
	"perf_event_open", "userfaultfd", "fanotify_init",
	"unshare", "setns",
	"clock_settime", "clock_adjtime", "settimeofday", "adjtimex", "stime",
	"reboot", "swapon", "swapoff",
	"open_by_handle_at", "name_to_handle_at",
	"personality", "acct", "quotactl", "quotactl_fd", "iopl", "ioperm", "syslog",
	"vhangup", "lookup_dcookie", "nfsservctl", "uselib", "_sysctl", "vm86", "vm86old",
	"io_uring_setup", "io_uring_enter", "io_uring_register",
};

static const unsigned long ns_flags[] = {
	CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
	CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP,
};

int exec_seccomp_build(void **prog_out)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	struct sock_fprog *prog = NULL;
	int memfd = -1, rc = 0;

	*prog_out = NULL;
	if (!ctx)
		return SS_ENOMEM;
	/* Another architecture's system-call table would bypass the names below. */
	/*
	 * A binary tree over the system-call numbers rather than a linear
	 * chain: the kernel runs the filter for every number when it builds
	 * its action cache at load time, and a task runs it on every call.
	 */
	if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) < 0 ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) < 0 ||
	    seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2) < 0) {
		rc = SS_ECONFIG;
		goto out;
	}
	for (size_t i = 0; i < ARRAY_LEN(denied); i++) {
		int nr = seccomp_syscall_resolve_name(denied[i]);
		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		int r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
		if (r < 0 && r != -EDOM) {
			log_error("seccomp: rule for %s: %s", denied[i], strerror(-r));
			rc = SS_ECONFIG;
			goto out;
		}
	}
	if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) < 0) {
		rc = SS_ECONFIG;
		goto out;
	}
	for (size_t i = 0; i < ARRAY_LEN(ns_flags); i++)
		if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i])) < 0) {
			rc = SS_ECONFIG;
			goto out;
		}
	/* Faking terminal input: the kernel reads the command as 32 bits. */
	if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
			     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCSTI)) < 0 ||
	    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
			     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, TIOCLINUX)) < 0) {
		rc = SS_ECONFIG;
		goto out;
	}

	memfd = memfd_create("seeswarm-seccomp", MFD_CLOEXEC);
	if (memfd < 0 || seccomp_export_bpf(ctx, memfd) < 0) {
		rc = SS_EIO;
		goto out;
	}
	off_t size = lseek(memfd, 0, SEEK_END);
	if (size <= 0 || size % (off_t)sizeof(struct sock_filter) ||
	    size / (off_t)sizeof(struct sock_filter) > BPF_MAXINSNS) {
		rc = SS_ECONFIG;
		goto out;
	}
	prog = xcalloc(1, sizeof(*prog) + (size_t)size);
	prog->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
	prog->filter = (struct sock_filter *)(prog + 1);
	if (pread(memfd, prog->filter, (size_t)size, 0) != size) {
		rc = SS_EIO;
		goto out;
	}
	*prog_out = prog;
	prog = NULL;
out:
	free(prog);
	if (memfd >= 0)
		close(memfd);
	seccomp_release(ctx);
	return rc;
}

void exec_seccomp_free(void *prog)
{
	free(prog);
}

int exec_seccomp_load(const void *prog)
{
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, prog) < 0)
		return -errno;
	return 0;
}
