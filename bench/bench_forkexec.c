/*
 * bench_forkexec.c - the raw baseline for job throughput: N runs of
 * /bin/true by plain fork/exec, W at a time. Prints forkexec_per_second=R.
 *
 * usage: bench_forkexec [N] [WORKERS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static pid_t spawn_true(void)
{
	pid_t pid = fork();
	if (pid == 0) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	return pid;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 10000;
	long w = argc > 2 ? strtol(argv[2], NULL, 10) : 2;
	if (n < 1 || n > 10000000 || w < 1 || w > 1024) {
		fprintf(stderr, "usage: bench_forkexec [N 1..10000000] [WORKERS 1..1024]\n");
		return 2;
	}
	long started = 0, done = 0, running = 0;
	double t0 = now_s();
	while (done < n) {
		while (running < w && started < n) {
			if (spawn_true() < 0) {
				perror("fork");
				return 1;
			}
			started++;
			running++;
		}
		int st;
		if (wait(&st) < 0) {
			perror("wait");
			return 1;
		}
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			fprintf(stderr, "bench_forkexec: /bin/true failed\n");
			return 1;
		}
		running--;
		done++;
	}
	double dt = now_s() - t0;
	printf("forkexec_runs=%ld\nforkexec_seconds=%.3f\nforkexec_per_second=%.1f\n", n, dt, n / dt);
	return 0;
}
