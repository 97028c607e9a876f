/*
 * bench_spawn.c - spawn-to-exit latency of a sandboxed /bin/true against a
 * plain fork/exec of /bin/true, and throughput of sandboxed /bin/true tasks
 * with several workers. Needs root. Prints key=value lines.
 *
 * usage: bench_spawn [-n RUNS] [-w WORKERS] [-t SECONDS] [--shared-netns] [--no-landlock]
 *                    [--warm N]   (N sandboxes prepared ahead of demand)
 *                    [--no-out]   (the task keeps no outputs, as a job task without any)
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent/exec/exec.h"
#include "core/core.h"

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static void report(const char *name, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), cmp_double);
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += v[i];
	int p99 = (int)((double)n * 0.99);
	if (p99 >= n)
		p99 = n - 1;
	printf("%s_runs=%d\n%s_median_us=%.1f\n%s_p99_us=%.1f\n%s_mean_us=%.1f\n", name, n, name,
	       v[n / 2], name, v[p99], name, sum / n);
}

static double plain_once(void)
{
	double t0 = now_us();
	pid_t pid = fork();
	if (pid == 0) {
		char *argv[] = {"/bin/true", NULL};
		char *envp[] = {NULL};
		execve("/bin/true", argv, envp);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	return now_us() - t0;
}

struct worker {
	struct exec_sandbox *sb;
	const struct exec_spec *spec;
	const char *bundle;
	double until_us;
	atomic_long *done;
	atomic_long *failed;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	while (now_us() < w->until_us) {
		struct exec_result res;
		int rc = exec_run(w->sb, w->spec, w->bundle, NULL, &res);
		if (rc || !exec_result_ok(&res))
			atomic_fetch_add(w->failed, 1);
		else
			atomic_fetch_add(w->done, 1);
		exec_result_free(&res);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int runs = 1000, workers = 2;
	double seconds = 5;
	struct exec_sandbox_opts so = {0};
	struct exec_sandbox *sb = NULL;
	struct exec_spec spec;
	char bundle[] = "/tmp/seeswarm-bench-XXXXXX";
	bool no_out = false;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-n") && i + 1 < argc)
			runs = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-w") && i + 1 < argc)
			workers = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-t") && i + 1 < argc)
			seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--shared-netns"))
			so.shared_netns = true;
		else if (!strcmp(argv[i], "--no-landlock"))
			so.no_landlock = true;
		else if (!strcmp(argv[i], "--warm") && i + 1 < argc)
			so.warm = (unsigned)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--no-out"))
			no_out = true;
		else {
			fprintf(stderr, "usage: %s [-n RUNS] [-w WORKERS] [-t SECONDS] "
					"[--shared-netns] [--no-landlock] [--warm N] [--no-out]\n", argv[0]);
			return 2;
		}
	}
	if (runs < 10 || workers < 1 || workers > 64 || seconds <= 0) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	if (geteuid() != 0) {
		printf("skipped=needs root\n");
		return 0;
	}
	log_init("bench", LOG_WARN);
	if (!mkdtemp(bundle) || chmod(bundle, 0755) < 0) {
		perror("mkdtemp");
		return 1;
	}
	int rc = exec_sandbox_new(&sb, &so);
	if (rc) {
		fprintf(stderr, "exec_sandbox_new: %s\n", ss_strerror(rc));
		return 1;
	}
	exec_spec_init(&spec);
	exec_spec_add_arg(&spec, "/bin/true");
	spec.res.memory_bytes = 64 << 20;
	spec.res.timeout_ms = 10000;
	spec.no_out = no_out;
	printf("sandbox=%s\n", exec_sandbox_describe(sb));
	printf("out=%s\n", no_out ? "none" : "tmpfs");

	double *v = xcalloc((size_t)runs, sizeof(double));
	double *pv = xcalloc((size_t)runs, sizeof(double));
	/* Warm up both paths (page cache, cgroup pool). */
	for (int i = 0; i < 20; i++) {
		struct exec_result res;
		exec_run(sb, &spec, bundle, NULL, &res);
		exec_result_free(&res);
		plain_once();
	}
	/*
	 * Plain and sandboxed runs alternate in blocks of 50, so both see the
	 * same machine (a busy neighbour or a frequency change moves both sides
	 * of the ratio), while inside a block each kind runs back to back as it
	 * would alone: the work a sandbox leaves to kernel threads (namespace
	 * teardown) does not land on a plain run, except at block edges.
	 */
	int failures = 0;
	for (int b = 0; b < runs; b += 50) {
		int end = b + 50 < runs ? b + 50 : runs;
		for (int i = b; i < end; i++)
			pv[i] = plain_once();
		for (int i = b; i < end; i++) {
			struct exec_result res;
			double t0 = now_us();
			rc = exec_run(sb, &spec, bundle, NULL, &res);
			v[i] = now_us() - t0;
			if (rc || !exec_result_ok(&res)) {
				if (failures++ == 0)
					fprintf(stderr, "task failed: %s (%s)\n", res.msg,
						ss_strerror(rc));
			}
			exec_result_free(&res);
		}
	}
	report("plain", pv, runs);
	report("sandbox", v, runs);
	printf("sandbox_failures=%d\n", failures);
	printf("latency_ratio_median=%.2f\n", v[runs / 2] / pv[runs / 2]);

	atomic_long done = 0, failed = 0;
	pthread_t *th = xcalloc((size_t)workers, sizeof(pthread_t));
	struct worker w = {.sb = sb, .spec = &spec, .bundle = bundle, .done = &done, .failed = &failed};
	double t0 = now_us();
	w.until_us = t0 + seconds * 1e6;
	for (int i = 0; i < workers; i++)
		pthread_create(&th[i], NULL, worker_main, &w);
	for (int i = 0; i < workers; i++)
		pthread_join(th[i], NULL);
	double el = (now_us() - t0) / 1e6;
	printf("throughput_workers=%d\nthroughput_seconds=%.2f\nthroughput_tasks=%ld\n"
	       "throughput_failures=%ld\nthroughput_per_s=%.1f\n",
	       workers, el, (long)done, (long)failed, (double)done / el);
	printf("warm_slots=%u\nwarm_hits=%llu\n", so.warm,
	       (unsigned long long)exec_sandbox_warm_hits(sb));

	free(th);
	free(v);
	free(pv);
	exec_spec_free(&spec);
	exec_sandbox_free(sb);
	rmdir(bundle);
	return failures || failed ? 1 : 0;
}
