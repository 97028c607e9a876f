/*
 * test_exec_sandbox.c - exec_run() in-process (src/agent/exec/sandbox.c and
 * cgroup.c): what one sandbox factory carries from task to task. Needs
 * root; every test skips without it.
 *
 * The system tests (tests/system/test_executor.py) run one task per process
 * through `seeswarm task run-local`. These run many tasks through one
 * factory, as the agent does: pooled cgroups are reused, so a task's limits
 * and counters must not leak into the next one; children are cloned from
 * several threads at once into one address space; and every task enters a
 * copy of one template mount namespace.
 */
#include <pthread.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/exec/exec.h"
#include "core/core.h"
#include "fixture.h"

struct fixture {
	struct exec_sandbox *sb;
	char state[64];
	char bundle[64];
};

static int setup_with(void **state, unsigned warm)
{
	if (geteuid() != 0) {
		*state = NULL;
		return 0;
	}
	struct fixture *f = xcalloc(1, sizeof(*f));
	fx_tmpdir(f->state, sizeof(f->state), "exec-sb");
	fx_tmpdir(f->bundle, sizeof(f->bundle), "exec-sb-bundle");
	assert_int_equal(chmod(f->bundle, 0755), 0);
	struct exec_sandbox_opts o = {.state_dir = f->state, .shared_netns = true, .warm = warm};
	assert_int_equal(exec_sandbox_new(&f->sb, &o), 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, 0);
}

/* The same tests through sandboxes prepared ahead of demand. */
static int setup_warm(void **state)
{
	return setup_with(state, 2);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	if (!f)
		return 0;
	exec_sandbox_free(f->sb);
	char *root = xasprintf("%s/root", f->state);
	rmdir(root);
	free(root);
	rmdir(f->state);
	rmdir(f->bundle);
	free(f);
	return 0;
}

static struct fixture *need_root(void **state)
{
	if (!*state)
		skip(); /* cmocka prints the test as skipped: the sandbox needs root */
	return *state;
}

/*
 * Runs `sh -c script` with the given memory (MiB) and pids limits, and with
 * or without /out; res must be freed.
 */
static void run_sh_out(struct fixture *f, const char *script, unsigned mem_mib, unsigned pids,
		       bool no_out, struct exec_result *res)
{
	struct exec_spec spec;
	exec_spec_init(&spec);
	assert_int_equal(exec_spec_add_arg(&spec, "/bin/sh"), 0);
	assert_int_equal(exec_spec_add_arg(&spec, "-c"), 0);
	assert_int_equal(exec_spec_add_arg(&spec, script), 0);
	spec.res.memory_bytes = (uint64_t)mem_mib << 20;
	spec.res.pids = pids;
	spec.res.timeout_ms = 20000;
	spec.no_out = no_out;
	assert_int_equal(exec_run(f->sb, &spec, f->bundle, NULL, res), 0);
	exec_spec_free(&spec);
}

static void run_sh(struct fixture *f, const char *script, unsigned mem_mib, unsigned pids,
		   struct exec_result *res)
{
	run_sh_out(f, script, mem_mib, pids, false, res);
}

static void test_counters_do_not_leak_into_the_next_task(void **state)
{
	struct fixture *f = need_root(state);
	struct exec_result r;

	run_sh(f, "bomb() { bomb | bomb & }; bomb; sleep 1; exit 0", 64, 16, &r);
	assert_true(r.usage.pids_limit_hit);
	exec_result_free(&r);
	run_sh(f, "exit 0", 64, 16, &r);
	assert_true(exec_result_ok(&r));
	assert_false(r.usage.pids_limit_hit);
	exec_result_free(&r);

	run_sh(f, "exec python3 -c \"x = b'a' * (640 << 20)\"", 64, 64, &r);
	assert_int_equal(r.status, EXEC_OOM);
	assert_true(r.usage.oom_kills >= 1);
	exec_result_free(&r);
	run_sh(f, "exit 0", 64, 64, &r);
	assert_true(exec_result_ok(&r));
	assert_int_equal(r.usage.oom_kills, 0);
	assert_true(r.usage.peak_mem_bytes < (64ULL << 20));
	exec_result_free(&r);
}

static void test_limits_follow_each_task(void **state)
{
	struct fixture *f = need_root(state);
	static const char hog[] = "exec python3 -c \"x = b'a' * (96 << 20); print(len(x))\"";
	struct exec_result r;

	run_sh(f, hog, 256, 64, &r);
	assert_true(exec_result_ok(&r));
	exec_result_free(&r);
	/* The same pooled cgroup, a lower limit: it must be written again. */
	run_sh(f, hog, 48, 64, &r);
	assert_int_equal(r.status, EXEC_OOM);
	exec_result_free(&r);
	run_sh(f, hog, 256, 64, &r);
	assert_true(exec_result_ok(&r));
	exec_result_free(&r);
}

struct worker {
	struct fixture *f;
	int ok, failed;
	char first_error[256];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	for (int i = 0; i < 40; i++) {
		struct exec_result r;
		run_sh(w->f, "test \"$(id -u)\" = 0 && test -w /tmp", 64, 64, &r);
		if (exec_result_ok(&r)) {
			w->ok++;
		} else {
			if (!w->failed)
				snprintf(w->first_error, sizeof(w->first_error), "%s", r.msg);
			w->failed++;
		}
		exec_result_free(&r);
	}
	return NULL;
}

/* Children cloned from several threads share the agent's mm; their id maps must still work. */
static void test_concurrent_children(void **state)
{
	struct fixture *f = need_root(state);
	struct worker w[4];
	pthread_t t[4];
	memset(w, 0, sizeof(w));
	for (int i = 0; i < 4; i++) {
		w[i].f = f;
		assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
	}
	int ok = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		if (w[i].failed)
			print_error("thread %d: %d failed, first: %s\n", i, w[i].failed,
				    w[i].first_error);
		assert_int_equal(w[i].failed, 0);
		ok += w[i].ok;
	}
	assert_int_equal(ok, 160);
}

/* With prepared sandboxes, tasks run in them (and still pass every check above). */
static void test_prepared_sandboxes_are_used(void **state)
{
	struct fixture *f = need_root(state);
	uint64_t before = exec_sandbox_warm_hits(f->sb);
	for (int i = 0; i < 20; i++) {
		struct exec_result r;
		run_sh(f, "test \"$(cat /proc/sys/kernel/hostname)\" = seeswarm-task", 64, 64, &r);
		assert_true(exec_result_ok(&r));
		exec_result_free(&r);
		usleep(20000); /* time for the slot to prepare the next one */
	}
	assert_true(exec_sandbox_warm_hits(f->sb) - before >= 10);
}

/* A task sees the template's few mounts and its own, none of the host's, and cannot write them. */
static void test_mount_view(void **state)
{
	struct fixture *f = need_root(state);
	struct exec_result r;
	run_sh(f,
	       "n=$(wc -l < /proc/self/mountinfo); test \"$n\" -le 12 || { echo \"$n mounts\"; exit 1; }; "
	       "grep -q ' /bundle ro,' /proc/self/mountinfo || exit 2; "
	       "! grep -q ' /sys ' /proc/self/mountinfo || exit 3; "
	       "touch /bundle/x 2>/dev/null && exit 4; touch /usr/x 2>/dev/null && exit 5; "
	       "touch /x 2>/dev/null && exit 6; test -e /run && exit 7; echo > /tmp/ok",
	       64, 64, &r);
	if (!exec_result_ok(&r))
		print_error("%s: %.*s\n", r.msg, (int)r.out.len, (const char *)r.out.data);
	assert_true(exec_result_ok(&r));
	exec_result_free(&r);
}

/*
 * Usage is this task's own: the counters a pooled cgroup keeps open are read
 * afresh each time, and peak memory is reset between tasks.
 */
static void test_usage_is_per_task(void **state)
{
	struct fixture *f = need_root(state);
	struct exec_result r;
	for (int round = 0; round < 2; round++) {
		run_sh(f,
		       "exec python3 -c \"import time; x = b'a' * (48 << 20); t = time.process_time()\n"
		       "while time.process_time() - t < 0.3: pass\"",
		       256, 64, &r);
		assert_true(exec_result_ok(&r));
		assert_true(r.usage.peak_mem_bytes >= (48ULL << 20));
		assert_true(r.usage.cpu_ns >= 250000000ULL);
		exec_result_free(&r);
		run_sh(f, "exit 0", 256, 64, &r);
		assert_true(exec_result_ok(&r));
		assert_true(r.usage.peak_mem_bytes < (24ULL << 20));
		assert_true(r.usage.cpu_ns < 150000000ULL);
		exec_result_free(&r);
	}
}

/* A task that keeps no outputs gets the template's read-only /out, and nothing is collected. */
static void test_no_out(void **state)
{
	struct fixture *f = need_root(state);
	struct exec_result r;
	run_sh_out(f,
		   "test -d /out || exit 1; echo x > /out/x 2>/dev/null && exit 2; "
		   "grep -q ' /out ' /proc/self/mountinfo && exit 3; echo y > /tmp/y",
		   64, 64, true, &r);
	if (!exec_result_ok(&r))
		print_error("%s\n", r.msg);
	assert_true(exec_result_ok(&r));
	assert_int_equal(r.n_outputs, 0);
	exec_result_free(&r);
	/* Without the flag, /out is a writable tmpfs whose files are collected. */
	run_sh_out(f, "echo x > /out/x", 64, 64, false, &r);
	assert_true(exec_result_ok(&r));
	assert_int_equal(r.n_outputs, 1);
	exec_result_free(&r);
}

/*
 * A task's /tmp is charged to its memory cgroup, and the cgroup is reused:
 * the next task must not start while those pages are still charged.
 */
static void test_tmp_pages_do_not_reach_the_next_task(void **state)
{
	struct fixture *f = need_root(state);
	for (int i = 0; i < 5; i++) {
		struct exec_result r;
		run_sh(f, "head -c 40000000 /dev/zero > /tmp/f", 64, 64, &r);
		assert_true(exec_result_ok(&r));
		exec_result_free(&r);
		run_sh(f, "exec python3 -c \"x = b'a' * (40 << 20)\"", 64, 64, &r);
		if (!exec_result_ok(&r))
			print_error("round %d: %s\n", i, r.msg);
		assert_true(exec_result_ok(&r));
		assert_true(r.usage.peak_mem_bytes < (60ULL << 20));
		exec_result_free(&r);
	}
}

static void on_usr1(int sig)
{
	(void)sig;
}

/*
 * The agent's signal dispositions do not reach the task: what it ignores or
 * catches is default in the task, and nothing is blocked.
 */
static void test_signals_are_default(void **state)
{
	struct fixture *f = need_root(state);
	struct sigaction old_pipe, old_usr1, old_hup;
	struct sigaction ign = {.sa_handler = SIG_IGN}, cgt = {.sa_handler = on_usr1};
	sigaction(SIGPIPE, &ign, &old_pipe);
	sigaction(SIGHUP, &ign, &old_hup);
	sigaction(SIGUSR1, &cgt, &old_usr1);
	/* glibc keeps 32 for itself and its sigaction() refuses it; an agent may inherit it ignored. */
	struct {
		void (*handler)(int);
		unsigned long flags;
		void (*restorer)(void);
		uint64_t mask;
	} ign32 = {.handler = SIG_IGN}, old32;
	assert_int_equal(syscall(SYS_rt_sigaction, 32, &ign32, &old32, sizeof(ign32.mask)), 0);
	/*
	 * Several tasks: a prepared child copied the dispositions when it was
	 * cloned, so with prepared sandboxes the first ones predate the change.
	 */
	bool clean = true;
	for (int i = 0; i < 4 && clean; i++) {
		struct exec_result r;
		/* cat, which catches nothing itself (grep catches SIGSEGV). */
		run_sh(f, "exec cat /proc/self/status", 64, 64, &r);
		assert_true(exec_result_ok(&r));
		char *out = xasprintf("%.*s", (int)r.out.len, (const char *)r.out.data);
		clean = strstr(out, "SigIgn:\t0000000000000000\n") &&
			strstr(out, "SigCgt:\t0000000000000000\n") &&
			strstr(out, "SigBlk:\t0000000000000000\n");
		if (!clean)
			print_error("task %d: dispositions leaked into the task:\n%s", i, out);
		free(out);
		exec_result_free(&r);
		usleep(20000); /* time for a slot to prepare the next one */
	}
	sigaction(SIGPIPE, &old_pipe, NULL);
	sigaction(SIGHUP, &old_hup, NULL);
	sigaction(SIGUSR1, &old_usr1, NULL);
	syscall(SYS_rt_sigaction, 32, &old32, NULL, sizeof(old32.mask));
	assert_true(clean);
}

struct canceller {
	struct exec_cancel *c;
	unsigned after_ms;
};

static void *cancel_later(void *arg)
{
	const struct canceller *k = arg;
	usleep(k->after_ms * 1000);
	exec_cancel_trigger(k->c);
	return NULL;
}

/* Runs `sh -c script`, cancelled after after_ms, with a kill grace; returns how long it took (ms). */
static uint64_t run_cancelled(struct fixture *f, const char *script, uint32_t grace_ms, unsigned after_ms,
			      struct exec_result *res)
{
	struct exec_spec spec;
	exec_spec_init(&spec);
	assert_int_equal(exec_spec_add_arg(&spec, "/bin/sh"), 0);
	assert_int_equal(exec_spec_add_arg(&spec, "-c"), 0);
	assert_int_equal(exec_spec_add_arg(&spec, script), 0);
	spec.res.timeout_ms = 20000;
	spec.res.kill_grace_ms = grace_ms;
	spec.no_out = true;
	struct canceller k = {.after_ms = after_ms};
	assert_int_equal(exec_cancel_new(&k.c), 0);
	spec.cancel = k.c;
	pthread_t t;
	assert_int_equal(pthread_create(&t, NULL, cancel_later, &k), 0);
	uint64_t t0 = time_mono_ms();
	assert_int_equal(exec_run(f->sb, &spec, f->bundle, NULL, res), 0);
	uint64_t took = time_mono_ms() - t0;
	pthread_join(t, NULL);
	exec_cancel_free(k.c);
	exec_spec_free(&spec);
	return took;
}

/*
 * A cancel with a kill grace sends SIGTERM first: a task that catches it
 * ends in its own way within the grace (its output kept); one that does not
 * (a pid-namespace init ignores what it does not catch) is killed when the
 * grace runs out. Without a grace, SIGKILL at once.
 */
static void test_cancel_grace(void **state)
{
	struct fixture *f = need_root(state);
	struct exec_result r;
	run_cancelled(f, "trap 'echo bye; exit 3' TERM; echo up; while :; do sleep 0.02; done", 5000, 300, &r);
	assert_int_equal(r.status, EXEC_SIGNALED);
	assert_int_equal(r.code, 3);
	assert_true(r.out.len > 0 && memmem(r.out.data, r.out.len, "up\nbye\n", 7));
	exec_result_free(&r);

	uint64_t took = run_cancelled(f, "sleep 30", 700, 200, &r);
	assert_int_equal(r.status, EXEC_SIGNALED);
	assert_int_equal(r.code, SIGKILL);
	assert_true(took >= 850 && took < 15000); /* the grace, then SIGKILL (not the 20 s timeout) */
	exec_result_free(&r);

	run_cancelled(f, "trap 'echo bye; exit 3' TERM; while :; do sleep 0.02; done", 0, 200, &r);
	assert_int_equal(r.status, EXEC_SIGNALED);
	assert_int_equal(r.code, SIGKILL);
	assert_true(r.out.len == 0 || !memmem(r.out.data, r.out.len, "bye", 3)); /* no data: no pointer */
	exec_result_free(&r);
}

int main(void)
{
	log_init("test", LOG_WARN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counters_do_not_leak_into_the_next_task),
		cmocka_unit_test(test_limits_follow_each_task),
		cmocka_unit_test(test_concurrent_children),
		cmocka_unit_test(test_mount_view),
		cmocka_unit_test(test_usage_is_per_task),
		cmocka_unit_test(test_no_out),
		cmocka_unit_test(test_signals_are_default),
		cmocka_unit_test(test_tmp_pages_do_not_reach_the_next_task),
		cmocka_unit_test(test_cancel_grace),
	};
	const struct CMUnitTest warm[] = {
		cmocka_unit_test(test_counters_do_not_leak_into_the_next_task),
		cmocka_unit_test(test_limits_follow_each_task),
		cmocka_unit_test(test_concurrent_children),
		cmocka_unit_test(test_mount_view),
		cmocka_unit_test(test_usage_is_per_task),
		cmocka_unit_test(test_no_out),
		cmocka_unit_test(test_signals_are_default),
		cmocka_unit_test(test_tmp_pages_do_not_reach_the_next_task),
		cmocka_unit_test(test_prepared_sandboxes_are_used),
	};
	int failed = cmocka_run_group_tests_name("cold", tests, setup, teardown);
	failed += cmocka_run_group_tests_name("prepared", warm, setup_warm, teardown);
	return failed;
}
