/*
 * bench_sched.c - placement throughput and decision latency of the scheduler
 * on one core: NODES nodes in 10 classes (mixed TEE types, labels, features,
 * capacities; per-node prices and loads; some measured RTTs), TASKS tasks
 * with mixed constraints (TEE lists, hardware, labels, features, inputs with
 * holders, optimize modes, spread). Every placement is reserved, and the
 * oldest running task is released once a window of running tasks is full,
 * so the swarm stays about half full (steady state). The window is filled
 * once before the measured run.
 *
 * Prints one line:
 *   sched: T placements in X s: Y placements/s, p50 A us, p99 B us (N nodes, C classes)
 *
 * usage: bench_sched [TASKS] [NODES] [SEED]
 * With BENCH_WHY=1 in the environment, the first failed placements print why.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "manager/sched/sched.h"

#define GIB (1024ULL * 1024 * 1024)
#define MIB (1024ULL * 1024)
#define NOW 1700000000000LL

struct tmpl {
	const char *tee;
	const char *zone;
	const char *region;
	const char *feat[3];
	size_t nf;
	double price;
	uint32_t cores;
	bool hardware;
};

static const struct tmpl tmpls[] = {
	{"sim", "a", "eu", {"aesni"}, 1, 0.10, 8, false},
	{"tpm", "b", "eu", {"aesni", "avx2"}, 2, 0.40, 16, true},
	{"sev-snp", "a", "eu", {"aesni", "avx2", "avx512"}, 3, 1.20, 32, true},
	{"sev-snp", "b", "eu", {"aesni", "avx2", "avx512"}, 3, 2.20, 64, true},
	{"sev-snp", "c", "us", {"aesni", "avx2"}, 2, 0.70, 16, true},
	{"tdx", "a", "us", {"aesni", "avx2", "avx512"}, 3, 1.30, 32, true},
	{"tdx", "c", "us", {"aesni", "avx2", "amx"}, 3, 2.50, 64, true},
	{"sgx", "b", "eu", {"aesni", "avx2"}, 2, 0.60, 8, true},
	{"sgx", "c", "us", {"aesni", "avx2", "avx512"}, 3, 0.90, 16, true},
	{"tpm", "c", "us", {"aesni"}, 1, 0.50, 32, true},
};

static uint64_t rng_state;

static uint64_t rnd(void)
{
	uint64_t x = (rng_state += 0x9e3779b97f4a7c15ULL);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static uint32_t below(uint32_t n)
{
	return (uint32_t)(rnd() % n);
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

/* One task's request and the storage its pointers borrow. */
struct task {
	struct sched_req req;
	const char *lk[2], *lv[2];
	const char *tee[3];
	struct sched_input in[3];
	struct sched_node *holders[3][2];
};

/* A template drawn in proportion to its CPU, so that demand follows capacity. */
static const struct tmpl *pick_tmpl(void)
{
	uint32_t total = 0;
	for (size_t i = 0; i < ARRAY_LEN(tmpls); i++)
		total += tmpls[i].cores;
	uint32_t x = below(total);
	size_t i = 0;
	while (x >= tmpls[i].cores)
		x -= tmpls[i++].cores;
	return &tmpls[i];
}

static const char *const tee_names[] = {"sim", "tpm", "sev-snp", "tdx", "sgx"};

/*
 * Draws a task whose constraints some class satisfies: a template is picked
 * and the TEE list, labels and features are drawn from what it offers, so
 * that a placement can only fail for want of free capacity.
 */
static void make_task(struct task *t, struct sched_node **nodes, uint32_t n_nodes)
{
	struct sched_req *r = &t->req;
	const struct tmpl *m = pick_tmpl();
	memset(t, 0, sizeof *t);
	r->tenant = "bench";
	r->cpu_millicores = 250 * (1 + below(8));
	r->memory_bytes = 256 * MIB * (1 + below(16));
	r->disk_bytes = 1 * GIB;
	r->now_ms = NOW;
	r->est_runtime_ms = 1000 * (1 + below(600));
	if (below(10) >= 4) {
		/* A list of one to three TEE types that includes the template's. */
		size_t nt = 0;
		t->tee[nt++] = m->tee;
		for (uint32_t e = below(3); e > 0; e--) {
			const char *x = tee_names[below(ARRAY_LEN(tee_names))];
			bool dup = false;
			for (size_t i = 0; i < nt; i++)
				dup |= strcmp(t->tee[i], x) == 0;
			if (!dup)
				t->tee[nt++] = x;
		}
		r->tee = t->tee;
		r->n_tee = nt;
	}
	r->hardware = m->hardware && below(2) == 0;
	r->affirming_only = below(4) == 0;
	uint32_t nl = 0;
	if (below(10) < 3) {
		t->lk[nl] = "zone";
		t->lv[nl++] = m->zone;
	}
	if (below(10) < 2) {
		t->lk[nl] = "region";
		t->lv[nl++] = m->region;
	}
	r->label_keys = t->lk;
	r->label_values = t->lv;
	r->n_labels = nl;
	if (below(10) < 3) {
		r->features = &m->feat[below((uint32_t)m->nf)];
		r->n_features = 1;
	}
	if (below(10) < 3) {
		uint32_t ni = 1 + below(3);
		for (uint32_t i = 0; i < ni; i++) {
			t->in[i].size = MIB * (1 + below(1024));
			uint32_t nh = below(3); /* 0 = only the manager has it */
			for (uint32_t h = 0; h < nh; h++)
				t->holders[i][h] = nodes[below(n_nodes)];
			t->in[i].holders = t->holders[i];
			t->in[i].n_holders = nh;
		}
		r->inputs = t->in;
		r->n_inputs = ni;
	}
	r->optimize = below(3);
	r->spread = below(5) == 0;
}

int main(int argc, char **argv)
{
	long n_tasks = argc > 1 ? strtol(argv[1], NULL, 10) : 100000;
	long n_nodes = argc > 2 ? strtol(argv[2], NULL, 10) : 10000;
	uint64_t seed = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
	if (n_tasks < 1 || n_tasks > 10000000 || n_nodes < 1 || n_nodes > 1000000) {
		fprintf(stderr, "usage: bench_sched [TASKS 1..10000000] [NODES 1..1000000] [SEED]\n");
		return 2;
	}
	rng_state = seed;
	struct sched_opts so = {.seed = seed};
	struct sched *s = sched_new(&so);
	struct sched_node **nodes = xcalloc((size_t)n_nodes, sizeof *nodes);
	bool used[ARRAY_LEN(tmpls)] = {0};
	uint64_t total_cpu = 0;
	for (long k = 0; k < n_nodes; k++) {
		const struct tmpl *m = &tmpls[k % ARRAY_LEN(tmpls)];
		used[k % ARRAY_LEN(tmpls)] = true;
		char id[32];
		snprintf(id, sizeof id, "node-%05ld", k);
		const char *lk[] = {"zone", "region"};
		const char *lv[] = {m->zone, m->region};
		struct sched_node_info info = {
			.id = id,
			.tee = m->tee,
			.hardware = m->hardware,
			.schedulable = below(100) != 0,
			.attest_ok = true,
			.attest_warning = below(50) == 0,
			.attest_expires_ms = NOW + 3600 * 1000,
			.pool = "",
			.label_keys = lk,
			.label_values = lv,
			.n_labels = 2,
			.features = m->feat,
			.n_features = m->nf,
			.cpu_millicores = m->cores * 1000,
			.memory_bytes = (uint64_t)m->cores * 4 * GIB,
			.disk_bytes = 500 * GIB,
			.price_per_hour = m->price * (0.9 + 0.2 * (double)below(1000) / 1000.0),
			.load = (double)below(1000) / 1000.0,
			.bandwidth_mbps = below(2) ? 1000 : 10000,
		};
		nodes[k] = sched_node_update(s, &info);
		total_cpu += info.cpu_millicores;
	}
	/* Measured RTTs for some pairs (as the agents' probes would report). */
	for (long k = 0; k < n_nodes * 5; k++)
		sched_set_rtt(s, nodes[below((uint32_t)n_nodes)], nodes[below((uint32_t)n_nodes)],
			      0.2 + (double)below(5000) / 100.0);
	size_t n_classes = 0;
	for (size_t i = 0; i < ARRAY_LEN(tmpls); i++)
		n_classes += used[i];

	/* A window of running tasks that keeps about half of the CPU reserved. */
	size_t window = (size_t)(total_cpu / 2 / 1125);
	if (window < 1)
		window = 1;
	enum { N_REQ = 4096 };
	struct task *tasks = xcalloc(N_REQ, sizeof *tasks);
	for (size_t i = 0; i < N_REQ; i++)
		make_task(&tasks[i], nodes, (uint32_t)n_nodes);
	struct running {
		struct sched_node *n;
		uint32_t cpu;
		uint64_t mem, disk;
	} *ring = xcalloc(window, sizeof *ring);
	size_t head = 0;
	int64_t *lat = xcalloc((size_t)n_tasks, sizeof *lat);
	long failed = 0;
	int64_t t0 = 0;
	for (long k = -(long)window; k < n_tasks; k++) {
		if (k == 0)
			t0 = now_ns();
		const struct sched_req *r = &tasks[(size_t)(k + (long)window) % N_REQ].req;
		struct sched_node *n = NULL;
		char why[256];
		int64_t a = now_ns();
		int rc = sched_place(s, r, &n, why, sizeof why);
		int64_t b = now_ns();
		if (k >= 0)
			lat[k] = b - a;
		if (rc) {
			failed += k >= 0;
			if (getenv("BENCH_WHY") && k >= 0 && failed < 6)
				fprintf(stderr, "why: %s\n", why);
			continue;
		}
		struct running *slot = &ring[head];
		if (slot->n)
			sched_release(s, slot->n, slot->cpu, slot->mem, slot->disk);
		sched_reserve(s, n, r->cpu_millicores, r->memory_bytes, r->disk_bytes);
		*slot = (struct running){n, r->cpu_millicores, r->memory_bytes, r->disk_bytes};
		head = (head + 1) % window;
	}
	double dt = (double)(now_ns() - t0) / 1e9;
	qsort(lat, (size_t)n_tasks, sizeof *lat, cmp_i64);
	size_t mid = (size_t)n_tasks / 2;
	double p50 = (double)lat[mid] / 1000.0;
	double p99 = (double)lat[(size_t)((double)n_tasks * 0.99)] / 1000.0;
	printf("sched: %ld placements in %.3f s: %.0f placements/s, p50 %.1f us, p99 %.1f us "
	       "(%ld nodes, %zu classes)\n",
	       n_tasks, dt, (double)n_tasks / dt, p50, p99, n_nodes, n_classes);
	if (failed)
		printf("sched: %ld placements found no feasible node (window %zu running tasks)\n", failed,
		       window);
	free(lat);
	free(ring);
	free(tasks);
	free(nodes);
	sched_free(s);
	return 0;
}
