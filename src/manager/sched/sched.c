/*
 * sched.c - the placement engine (see sched.h and docs/scheduler.md).
 *
 * Nodes live in a dense array (for full scans and explain) and a hash table
 * by id. Nodes whose static attributes are equal share a class; a class
 * holds its members in an array so that the limit step can probe random
 * members of the classes that are statically feasible without touching the
 * others. Each decision runs the stages of the iterator stack in order:
 *
 *   1. static feasibility, once per class (TEE, hardware, pool, code,
 *      labels, features, capacity); with many classes the verdicts are
 *      cached per request signature;
 *   2. the limit step: up to 4k random probes over the feasible classes,
 *      round-robin so that the candidates come from distinct classes, each
 *      probe checking the node's dynamic state (schedulable, attestation,
 *      free resources); small or sparse pools fall back to a full scan of the
 *      feasible classes so that a rare feasible node is always found;
 *   3. ranking of the candidates and the max score (ties by node id).
 *
 * All randomness comes from a splitmix64 generator seeded by the caller.
 */
#include "manager/sched/sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Below this many members in the feasible classes, a decision scans them all. */
#define SCAN_ALL_MAX 64
/* The limit step probes at most this many nodes per candidate wanted. */
#define PROBES_PER_CANDIDATE 4
#define DEFAULT_BANDWIDTH_MBPS 1000.0
#define AVOID_FACTOR 0.5
/*
 * With more classes than this, the static verdicts are cached per request
 * signature in CACHE_SLOTS direct-mapped slots (each holds at most one
 * pointer per class).
 */
#define CACHE_MIN_CLASSES 16
#define CACHE_SLOTS 256

/* ---- hashing and the PRNG ------------------------------------------------- */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static uint64_t hash_bytes(const void *p, size_t n)
{
	return mix64(hash_fnv1a(p, n, 0));
}

/* Mixed FNV-1a of a name, for the pointer tables. */
static uint64_t hash_name(const char *s)
{
	return hash_bytes(s, strlen(s));
}

static uint64_t hash_ptr(const void *p)
{
	return mix64((uint64_t)(uintptr_t)p);
}

/* splitmix64: a full-period 64-bit generator. */
static uint64_t rng_next(uint64_t *st)
{
	*st += 0x9e3779b97f4a7c15ULL;
	return mix64(*st);
}

/* Uniform enough in [0, n) for n < 2^32 (multiply-shift on the high bits). */
static size_t rng_below(uint64_t *st, size_t n)
{
	return (size_t)(((rng_next(st) >> 32) * (uint64_t)n) >> 32);
}

/* ---- an open-addressing table of pointers ---------------------------------- */

/*
 * Slots hold element pointers (NULL = empty) and their hashes; the caller's
 * eq() compares an element with a lookup key. Deletion shifts the following
 * run back, so there are no tombstones. The capacity is a power of two and the
 * load stays below 3/4.
 */
struct ptab {
	uint64_t *h;
	void **v;
	size_t cap;
	size_t len;
};

typedef bool (*ptab_eq_fn)(const void *elem, const void *key);

static void ptab_init(struct ptab *t)
{
	t->cap = 16;
	t->len = 0;
	t->h = xcalloc(t->cap, sizeof *t->h);
	t->v = xcalloc(t->cap, sizeof *t->v);
}

static void ptab_free(struct ptab *t)
{
	free(t->h);
	free(t->v);
	t->h = NULL;
	t->v = NULL;
	t->cap = t->len = 0;
}

/* Returns the slot holding the element equal to key, or the empty slot ending its run. */
static size_t ptab_slot(const struct ptab *t, uint64_t h, ptab_eq_fn eq, const void *key)
{
	size_t m = t->cap - 1;
	for (size_t i = h & m;; i = (i + 1) & m) {
		if (!t->v[i] || (t->h[i] == h && eq(t->v[i], key)))
			return i;
	}
}

static void *ptab_get(const struct ptab *t, uint64_t h, ptab_eq_fn eq, const void *key)
{
	return t->v[ptab_slot(t, h, eq, key)];
}

static void ptab_place(struct ptab *t, uint64_t h, void *v)
{
	size_t m = t->cap - 1;
	size_t i = h & m;
	while (t->v[i])
		i = (i + 1) & m;
	t->h[i] = h;
	t->v[i] = v;
}

/* Adds an element that is not in the table yet. */
static void ptab_add(struct ptab *t, uint64_t h, void *v)
{
	if ((t->len + 1) * 4 > t->cap * 3) {
		struct ptab old = *t;
		t->cap *= 2;
		t->h = xcalloc(t->cap, sizeof *t->h);
		t->v = xcalloc(t->cap, sizeof *t->v);
		for (size_t i = 0; i < old.cap; i++) {
			if (old.v[i])
				ptab_place(t, old.h[i], old.v[i]);
		}
		free(old.h);
		free(old.v);
	}
	ptab_place(t, h, v);
	t->len++;
}

/* Removes the element equal to key; returns it, or NULL when absent. */
static void *ptab_del(struct ptab *t, uint64_t h, ptab_eq_fn eq, const void *key)
{
	size_t m = t->cap - 1;
	size_t i = ptab_slot(t, h, eq, key);
	void *found = t->v[i];
	if (!found)
		return NULL;
	for (size_t j = (i + 1) & m; t->v[j]; j = (j + 1) & m) {
		size_t home = t->h[j] & m;
		/* The element at j stays when its home lies cyclically in (i, j]. */
		bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (stays)
			continue;
		t->h[i] = t->h[j];
		t->v[i] = t->v[j];
		i = j;
	}
	t->v[i] = NULL;
	t->len--;
	return found;
}

/* ---- measured RTTs, keyed by the pair of node serials ----------------------- */

/* Keys are (low serial << 32 | high serial); serials start at 1, so 0 marks an empty slot. */
struct rtab {
	uint64_t *k;
	double *v;
	size_t cap;
	size_t len;
};

static void rtab_init(struct rtab *t, size_t cap)
{
	t->cap = cap;
	t->len = 0;
	t->k = xcalloc(cap, sizeof *t->k);
	t->v = xcalloc(cap, sizeof *t->v);
}

static void rtab_free(struct rtab *t)
{
	free(t->k);
	free(t->v);
}

static size_t rtab_slot(const struct rtab *t, uint64_t key)
{
	size_t m = t->cap - 1;
	size_t i = mix64(key) & m;
	while (t->k[i] && t->k[i] != key)
		i = (i + 1) & m;
	return i;
}

/* Rebuilds the table with capacity cap, dropping the pairs that involve serial drop (0 = none). */
static void rtab_rebuild(struct rtab *t, size_t cap, uint32_t drop)
{
	struct rtab old = *t;
	rtab_init(t, cap);
	for (size_t i = 0; i < old.cap; i++) {
		uint64_t key = old.k[i];
		if (!key || (drop && ((uint32_t)(key >> 32) == drop || (uint32_t)key == drop)))
			continue;
		size_t j = rtab_slot(t, key);
		t->k[j] = key;
		t->v[j] = old.v[i];
		t->len++;
	}
	rtab_free(&old);
}

static void rtab_set(struct rtab *t, uint64_t key, double v)
{
	if ((t->len + 1) * 4 > t->cap * 3)
		rtab_rebuild(t, t->cap * 2, 0);
	size_t i = rtab_slot(t, key);
	if (!t->k[i]) {
		t->k[i] = key;
		t->len++;
	}
	t->v[i] = v;
}

/* ---- classes and nodes ------------------------------------------------------ */

/* The stages of feasibility, in the order they are checked; R_OK = feasible. */
enum rank {
	R_SCHED = 0,
	R_TEE,
	R_HW,
	R_AFFIRM,
	R_EXPIRED,
	R_POOL,
	R_CODE,
	R_LABEL,
	R_FEATURE,
	R_CPU,
	R_MEM,
	R_DISK,
	R_SLOTS,
	R_OK
};

/* The reasons that need no parameter; the others are formatted per class. */
static const char *const rank_text[R_OK] = {
	[R_SCHED] = "not schedulable",
	[R_HW] = "not hardware-attested",
	[R_AFFIRM] = "attestation not affirming",
	[R_EXPIRED] = "attestation expired",
	[R_CODE] = "code not allowed",
	[R_CPU] = "insufficient cpu",
	[R_MEM] = "insufficient memory",
	[R_DISK] = "insufficient disk",
	[R_SLOTS] = "no task slot free",
};

/* Nodes with equal static attributes; key is their canonical encoding. */
struct sched_class {
	uint64_t hash;
	uint8_t *key;
	size_t keylen;
	char *tee;
	bool hardware;
	char *pool;
	char **lk, **lv;        /* labels sorted by key, then value */
	size_t nl;
	char **feat;            /* features sorted, without duplicates */
	size_t nf;
	uint32_t cpu;           /* capacity */
	uint64_t mem;
	uint64_t disk;
	struct sched_node **nodes;
	size_t n, cap;
	size_t idx;             /* position in sched.classes */
	/* Per-decision scratch: the static verdict and its reason. */
	int rank;
	size_t count;
	char why[160];
};

struct sched_node {
	char *id;
	uint64_t hash;
	uint32_t serial;        /* never reused: keys the RTT table */
	bool has_rtt;
	size_t idx;             /* position in sched.nodes */
	size_t cpos;            /* position in cls->nodes */
	struct sched_class *cls;
	bool schedulable;
	bool attest_ok;
	bool attest_warning;
	int64_t attest_expires_ms;
	uint32_t cpu_res;
	uint64_t mem_res;
	uint64_t disk_res;
	uint32_t max_tasks;     /* the agent's concurrent-task slots; 0 = no limit */
	uint32_t tasks_res;     /* reservations held (one per placed task) */
	double price;
	double load;
	double bw_mbps;
	uint64_t mark;          /* == sched.gen when already probed in this decision */
};

/*
 * The classes that pass the static checks other than capacity for one
 * request signature (TEE list, hardware, pools, code verdict, labels,
 * features), valid while class_gen is unchanged.
 */
struct fcache {
	uint64_t hash;
	uint64_t gen;           /* sched.class_gen when filled; 0 = empty */
	struct buf sig;
	struct sched_class **cls;
	size_t n, cap;
};

/* The contiguous run of one class's feasible nodes in a full scan. */
struct seg {
	size_t start;
	size_t len;
};

struct sched {
	uint64_t rng;
	uint32_t k;
	double default_rtt_ms;
	struct ptab by_id;
	struct ptab by_key;
	struct sched_node **nodes;
	size_t n_nodes, cap_nodes;
	struct sched_class **classes;
	size_t n_classes, cap_classes;
	struct rtab rtt;
	uint32_t next_serial;
	double max_price;
	bool max_price_dirty;
	uint64_t gen;
	uint64_t class_gen;     /* changes whenever a class is created or freed */
	struct fcache cache[CACHE_SLOTS];
	struct buf key;         /* scratch: a class key */
	struct buf sig;         /* scratch: a request signature */
	/* Scratch for one decision. */
	struct sched_class **fcls;
	struct seg *segs;
	size_t cap_fcls;
	struct sched_node **scan;
	size_t cap_scan;
	struct sched_node **cand;
};

struct keyref {
	const void *p;
	size_t len;
};

static bool node_eq(const void *elem, const void *key)
{
	const struct sched_node *n = elem;
	return strcmp(n->id, key) == 0;
}

static bool class_eq(const void *elem, const void *key)
{
	const struct sched_class *c = elem;
	const struct keyref *r = key;
	return c->keylen == r->len && memcmp(c->key, r->p, r->len) == 0;
}

struct label {
	const char *k;
	const char *v;
};

static int label_cmp(const void *a, const void *b)
{
	const struct label *x = a, *y = b;
	int c = strcmp(x->k, y->k);
	return c ? c : strcmp(x->v, y->v);
}

static int str_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static const char *nz(const char *s)
{
	return s ? s : "";
}

static void key_str(struct buf *b, const char *s)
{
	buf_append(b, s, strlen(s) + 1);
}

/*
 * The static attributes of a node, sorted into canonical form: labels and
 * features are sets, so their order in info does not matter.
 */
struct statics {
	const char *tee;
	bool hardware;
	const char *pool;
	struct label *labels;
	size_t nl;
	const char **feat;
	size_t nf;
	uint32_t cpu;
	uint64_t mem;
	uint64_t disk;
};

static void statics_init(struct statics *st, const struct sched_node_info *info)
{
	st->tee = nz(info->tee);
	st->hardware = info->hardware;
	st->pool = nz(info->pool);
	st->nl = info->n_labels;
	st->labels = st->nl ? xcalloc(st->nl, sizeof *st->labels) : NULL;
	for (size_t i = 0; i < st->nl; i++) {
		st->labels[i].k = nz(info->label_keys[i]);
		st->labels[i].v = nz(info->label_values[i]);
	}
	if (st->nl > 1)
		qsort(st->labels, st->nl, sizeof *st->labels, label_cmp);
	st->feat = info->n_features ? xcalloc(info->n_features, sizeof *st->feat) : NULL;
	st->nf = 0;
	for (size_t i = 0; i < info->n_features; i++)
		st->feat[st->nf++] = nz(info->features[i]);
	if (st->nf > 1) {
		qsort(st->feat, st->nf, sizeof *st->feat, str_cmp);
		size_t w = 1;
		for (size_t i = 1; i < st->nf; i++) {
			if (strcmp(st->feat[i], st->feat[w - 1]) != 0)
				st->feat[w++] = st->feat[i];
		}
		st->nf = w;
	}
	st->cpu = info->cpu_millicores;
	st->mem = info->memory_bytes;
	st->disk = info->disk_bytes;
}

static void statics_free(struct statics *st)
{
	free(st->labels);
	free(st->feat);
}

/* Writes the canonical encoding of st: strings end in NUL, counts are binary. */
static void statics_key(struct buf *b, const struct statics *st)
{
	b->len = 0;
	key_str(b, st->tee);
	buf_append(b, &st->hardware, sizeof st->hardware);
	key_str(b, st->pool);
	uint64_t n = st->nl;
	buf_append(b, &n, sizeof n);
	for (size_t i = 0; i < st->nl; i++) {
		key_str(b, st->labels[i].k);
		key_str(b, st->labels[i].v);
	}
	n = st->nf;
	buf_append(b, &n, sizeof n);
	for (size_t i = 0; i < st->nf; i++)
		key_str(b, st->feat[i]);
	buf_append(b, &st->cpu, sizeof st->cpu);
	buf_append(b, &st->mem, sizeof st->mem);
	buf_append(b, &st->disk, sizeof st->disk);
}

static struct sched_class *class_new(struct sched *s, uint64_t h, const struct statics *st)
{
	struct sched_class *c = xcalloc(1, sizeof *c);
	c->hash = h;
	c->keylen = s->key.len;
	c->key = xmalloc(c->keylen);
	memcpy(c->key, s->key.data, c->keylen);
	c->tee = xstrdup(st->tee);
	c->hardware = st->hardware;
	c->pool = xstrdup(st->pool);
	c->nl = st->nl;
	c->lk = c->nl ? xcalloc(c->nl, sizeof *c->lk) : NULL;
	c->lv = c->nl ? xcalloc(c->nl, sizeof *c->lv) : NULL;
	for (size_t i = 0; i < c->nl; i++) {
		c->lk[i] = xstrdup(st->labels[i].k);
		c->lv[i] = xstrdup(st->labels[i].v);
	}
	c->nf = st->nf;
	c->feat = c->nf ? xcalloc(c->nf, sizeof *c->feat) : NULL;
	for (size_t i = 0; i < c->nf; i++)
		c->feat[i] = xstrdup(st->feat[i]);
	c->cpu = st->cpu;
	c->mem = st->mem;
	c->disk = st->disk;
	if (s->n_classes == s->cap_classes) {
		s->cap_classes = s->cap_classes ? 2 * s->cap_classes : 16;
		s->classes = xrealloc(s->classes, s->cap_classes * sizeof *s->classes);
	}
	c->idx = s->n_classes;
	s->classes[s->n_classes++] = c;
	s->class_gen++;
	ptab_add(&s->by_key, h, c);
	return c;
}

static void class_free(struct sched_class *c)
{
	for (size_t i = 0; i < c->nl; i++) {
		free(c->lk[i]);
		free(c->lv[i]);
	}
	for (size_t i = 0; i < c->nf; i++)
		free(c->feat[i]);
	free(c->lk);
	free(c->lv);
	free(c->feat);
	free(c->tee);
	free(c->pool);
	free(c->key);
	free(c->nodes);
	free(c);
}

static void class_join(struct sched_class *c, struct sched_node *n)
{
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 8;
		c->nodes = xrealloc(c->nodes, c->cap * sizeof *c->nodes);
	}
	n->cls = c;
	n->cpos = c->n;
	c->nodes[c->n++] = n;
}

/* Takes n out of its class and frees the class when it was the last member. */
static void class_leave(struct sched *s, struct sched_node *n)
{
	struct sched_class *c = n->cls;
	struct sched_node *last = c->nodes[--c->n];
	c->nodes[n->cpos] = last;
	last->cpos = n->cpos;
	n->cls = NULL;
	if (c->n > 0)
		return;
	struct keyref r = {c->key, c->keylen};
	ptab_del(&s->by_key, c->hash, class_eq, &r);
	struct sched_class *lc = s->classes[--s->n_classes];
	s->classes[c->idx] = lc;
	lc->idx = c->idx;
	class_free(c);
	s->class_gen++;
}

/* ---- the node table ------------------------------------------------------------- */

struct sched *sched_new(const struct sched_opts *opts)
{
	struct sched *s = xcalloc(1, sizeof *s);
	s->rng = opts ? opts->seed : 0;
	s->k = opts && opts->k ? opts->k : SCHED_DEFAULT_K;
	s->default_rtt_ms = opts && opts->default_rtt_ms > 0 ? opts->default_rtt_ms : 1.0;
	ptab_init(&s->by_id);
	ptab_init(&s->by_key);
	rtab_init(&s->rtt, 16);
	buf_init(&s->key);
	buf_init(&s->sig);
	s->class_gen = 1;
	for (size_t i = 0; i < CACHE_SLOTS; i++)
		buf_init(&s->cache[i].sig);
	s->cand = xcalloc(s->k, sizeof *s->cand);
	return s;
}

void sched_free(struct sched *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n_nodes; i++) {
		free(s->nodes[i]->id);
		free(s->nodes[i]);
	}
	for (size_t i = 0; i < s->n_classes; i++)
		class_free(s->classes[i]);
	free(s->nodes);
	free(s->classes);
	ptab_free(&s->by_id);
	ptab_free(&s->by_key);
	rtab_free(&s->rtt);
	buf_free(&s->key);
	buf_free(&s->sig);
	for (size_t i = 0; i < CACHE_SLOTS; i++) {
		buf_free(&s->cache[i].sig);
		free(s->cache[i].cls);
	}
	free(s->fcls);
	free(s->segs);
	free(s->scan);
	free(s->cand);
	free(s);
}

struct sched_node *sched_node_find(struct sched *s, const char *id)
{
	if (!id)
		return NULL;
	return ptab_get(&s->by_id, hash_name(id), node_eq, id);
}

struct sched_node *sched_node_update(struct sched *s, const struct sched_node_info *info)
{
	const char *id = nz(info->id);
	uint64_t h = hash_name(id);
	struct sched_node *n = ptab_get(&s->by_id, h, node_eq, id);
	struct statics st;
	statics_init(&st, info);
	statics_key(&s->key, &st);
	uint64_t ch = hash_bytes(s->key.data, s->key.len);
	struct keyref r = {s->key.data, s->key.len};
	if (!n) {
		n = xcalloc(1, sizeof *n);
		n->id = xstrdup(id);
		n->hash = h;
		n->serial = ++s->next_serial;
		if (n->serial == 0)
			fatal("sched: node serials exhausted");
		if (s->n_nodes == s->cap_nodes) {
			s->cap_nodes = s->cap_nodes ? 2 * s->cap_nodes : 64;
			s->nodes = xrealloc(s->nodes, s->cap_nodes * sizeof *s->nodes);
		}
		n->idx = s->n_nodes;
		s->nodes[s->n_nodes++] = n;
		ptab_add(&s->by_id, h, n);
		n->price = -1; /* below any real price, for the max-price bookkeeping */
	}
	if (!n->cls || !class_eq(n->cls, &r)) {
		if (n->cls)
			class_leave(s, n);
		struct sched_class *c = ptab_get(&s->by_key, ch, class_eq, &r);
		if (!c)
			c = class_new(s, ch, &st);
		class_join(c, n);
	}
	statics_free(&st);
	double price = info->price_per_hour > 0 && isfinite(info->price_per_hour) ? info->price_per_hour : 0;
	if (price >= s->max_price)
		s->max_price = price;
	else if (n->price == s->max_price)
		s->max_price_dirty = true;
	n->price = price;
	n->schedulable = info->schedulable;
	n->attest_ok = info->attest_ok;
	n->attest_warning = info->attest_warning;
	n->attest_expires_ms = info->attest_expires_ms;
	n->max_tasks = info->max_tasks;
	n->load = isfinite(info->load) ? fmin(fmax(info->load, 0.0), 1.0) : 1.0;
	n->bw_mbps = info->bandwidth_mbps > 0 && isfinite(info->bandwidth_mbps) ? info->bandwidth_mbps
										: DEFAULT_BANDWIDTH_MBPS;
	return n;
}

void sched_node_remove(struct sched *s, struct sched_node *n)
{
	if (!n)
		return;
	ptab_del(&s->by_id, n->hash, node_eq, n->id);
	class_leave(s, n);
	struct sched_node *last = s->nodes[--s->n_nodes];
	s->nodes[n->idx] = last;
	last->idx = n->idx;
	if (n->has_rtt)
		rtab_rebuild(&s->rtt, s->rtt.cap, n->serial);
	if (n->price == s->max_price)
		s->max_price_dirty = true;
	free(n->id);
	free(n);
}

const char *sched_node_id(const struct sched_node *n)
{
	return n->id;
}

size_t sched_node_count(const struct sched *s)
{
	return s->n_nodes;
}

static uint64_t rtt_key(const struct sched_node *a, const struct sched_node *b)
{
	uint32_t lo = a->serial < b->serial ? a->serial : b->serial;
	uint32_t hi = a->serial < b->serial ? b->serial : a->serial;
	return (uint64_t)lo << 32 | hi;
}

void sched_set_rtt(struct sched *s, struct sched_node *a, struct sched_node *b, double rtt_ms)
{
	if (!a || !b || a == b || !(rtt_ms >= 0) || !isfinite(rtt_ms))
		return;
	rtab_set(&s->rtt, rtt_key(a, b), rtt_ms);
	a->has_rtt = true;
	b->has_rtt = true;
}

/* The RTT between two nodes in milliseconds: measured, 0 to itself, or the default. */
static double rtt_get(const struct sched *s, const struct sched_node *a, const struct sched_node *b)
{
	if (a == b)
		return 0;
	if (!a->has_rtt || !b->has_rtt)
		return s->default_rtt_ms;
	size_t i = rtab_slot(&s->rtt, rtt_key(a, b));
	return s->rtt.k[i] ? s->rtt.v[i] : s->default_rtt_ms;
}

void sched_reserve(struct sched *s, struct sched_node *n, uint32_t cpu_millicores,
		   uint64_t memory_bytes, uint64_t disk_bytes)
{
	(void)s;
	n->cpu_res = n->cpu_res > UINT32_MAX - cpu_millicores ? UINT32_MAX : n->cpu_res + cpu_millicores;
	n->mem_res = n->mem_res > UINT64_MAX - memory_bytes ? UINT64_MAX : n->mem_res + memory_bytes;
	n->disk_res = n->disk_res > UINT64_MAX - disk_bytes ? UINT64_MAX : n->disk_res + disk_bytes;
	if (n->tasks_res < UINT32_MAX)
		n->tasks_res++;
}

void sched_release(struct sched *s, struct sched_node *n, uint32_t cpu_millicores,
		   uint64_t memory_bytes, uint64_t disk_bytes)
{
	(void)s;
	n->cpu_res = n->cpu_res > cpu_millicores ? n->cpu_res - cpu_millicores : 0;
	n->mem_res = n->mem_res > memory_bytes ? n->mem_res - memory_bytes : 0;
	n->disk_res = n->disk_res > disk_bytes ? n->disk_res - disk_bytes : 0;
	if (n->tasks_res > 0)
		n->tasks_res--;
}

/* ---- feasibility -------------------------------------------------------------------- */

/* What one decision needs beyond the request: computed once per decision. */
struct rctx {
	const struct sched_req *req;
	bool code_ok;
	double w[5];            /* binpack, locality, network, cost, load */
	double in_bytes;        /* total input bytes */
	double max_price;
};

/* Weights per optimize mode; each row sums to 1 so a score stays in 0..1. */
static const double weights[3][5] = {
	/*                        binpack locality network cost  load */
	[SCHED_OPT_BALANCED] = {0.30, 0.20, 0.20, 0.15, 0.15},
	[SCHED_OPT_COST] = {0.15, 0.10, 0.10, 0.55, 0.10},
	[SCHED_OPT_LATENCY] = {0.10, 0.30, 0.30, 0.00, 0.30},
};

static bool str_in(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (list[i] && strcmp(s, list[i]) == 0)
			return true;
	}
	return false;
}

static void ctx_init(struct sched *s, const struct sched_req *req, struct rctx *x)
{
	x->req = req;
	x->code_ok = true;
	if (req->code_digest && req->n_code_allow > 0) {
		x->code_ok = false;
		for (size_t i = 0; i < req->n_code_allow && !x->code_ok; i++)
			x->code_ok = memcmp(req->code_allow[i], req->code_digest, SHA256_LEN) == 0;
	}
	unsigned opt = (unsigned)req->optimize;
	memcpy(x->w, weights[opt < ARRAY_LEN(weights) ? opt : SCHED_OPT_BALANCED], sizeof x->w);
	x->in_bytes = 0;
	for (size_t i = 0; i < req->n_inputs; i++)
		x->in_bytes += (double)req->inputs[i].size;
	if (s->max_price_dirty) {
		s->max_price = 0;
		for (size_t i = 0; i < s->n_nodes; i++)
			s->max_price = fmax(s->max_price, s->nodes[i]->price);
		s->max_price_dirty = false;
	}
	x->max_price = s->max_price;
}

/*
 * Decides the static checks for a class: returns the rank of the first
 * failing check or R_OK. The capacity checks are skipped unless capacity is
 * true. When why is not NULL it receives the reason.
 */
static int class_check(const struct sched_class *c, const struct rctx *x, bool capacity, char *why,
		       size_t whylen)
{
	const struct sched_req *q = x->req;
	int r = R_OK;
	if (q->n_tee > 0 && !str_in(c->tee, q->tee, q->n_tee)) {
		if (why)
			snprintf(why, whylen, "tee %s not allowed", c->tee[0] ? c->tee : "(none)");
		return R_TEE;
	}
	if (q->hardware && !c->hardware) {
		r = R_HW;
		goto out;
	}
	if (q->n_pools > 0 && !str_in(c->pool, q->pools, q->n_pools)) {
		if (why)
			snprintf(why, whylen, "pool %s not allowed", c->pool[0] ? c->pool : "(none)");
		return R_POOL;
	}
	if (!x->code_ok) {
		r = R_CODE;
		goto out;
	}
	for (size_t i = 0; i < q->n_labels; i++) {
		const char *k = nz(q->label_keys[i]), *v = nz(q->label_values[i]);
		bool found = false;
		for (size_t j = 0; j < c->nl && !found; j++)
			found = strcmp(c->lk[j], k) == 0 && strcmp(c->lv[j], v) == 0;
		if (!found) {
			if (why)
				snprintf(why, whylen, "label %s=%s missing", k, v);
			return R_LABEL;
		}
	}
	for (size_t i = 0; i < q->n_features; i++) {
		const char *f = nz(q->features[i]);
		bool found = false;
		for (size_t j = 0; j < c->nf && !found; j++)
			found = strcmp(c->feat[j], f) == 0;
		if (!found) {
			if (why)
				snprintf(why, whylen, "feature %s missing", f);
			return R_FEATURE;
		}
	}
	if (!capacity)
		r = R_OK;
	else if (q->cpu_millicores > c->cpu)
		r = R_CPU;
	else if (q->memory_bytes > c->mem)
		r = R_MEM;
	else if (q->disk_bytes > c->disk)
		r = R_DISK;
out:
	if (why)
		snprintf(why, whylen, "%s", r < R_OK ? rank_text[r] : "");
	return r;
}

/* The node's dynamic checks: returns the rank of the first failing one or R_OK. */
static int node_check(const struct sched_node *n, const struct sched_req *q)
{
	const struct sched_class *c = n->cls;
	if (!n->schedulable)
		return R_SCHED;
	if (!n->attest_ok || (q->affirming_only && n->attest_warning))
		return R_AFFIRM;
	if (n->attest_expires_ms <= q->now_ms)
		return R_EXPIRED;
	if (n->cpu_res > c->cpu || q->cpu_millicores > c->cpu - n->cpu_res)
		return R_CPU;
	if (n->mem_res > c->mem || q->memory_bytes > c->mem - n->mem_res)
		return R_MEM;
	if (n->disk_res > c->disk || q->disk_bytes > c->disk - n->disk_res)
		return R_DISK;
	if (n->max_tasks && n->tasks_res >= n->max_tasks)
		return R_SLOTS;
	return R_OK;
}

/* ---- ranking -------------------------------------------------------------------------- */

struct scores {
	double binpack, locality, network, cost, load;
	double total;
};

static double frac_after(uint64_t used, uint64_t want, uint64_t total)
{
	if (total == 0)
		return 1.0;
	double f = ((double)used + (double)want) / (double)total;
	return f > 1.0 ? 1.0 : f;
}

static bool holds(const struct sched_input *in, const struct sched_node *n)
{
	for (size_t i = 0; i < in->n_holders; i++) {
		if (in->holders[i] == n)
			return true;
	}
	return false;
}

static void score_node(const struct sched *s, const struct sched_node *n, const struct rctx *x,
		       struct scores *sc)
{
	const struct sched_req *q = x->req;
	const struct sched_class *c = n->cls;
	double used = (frac_after(n->cpu_res, q->cpu_millicores, c->cpu) +
		       frac_after(n->mem_res, q->memory_bytes, c->mem)) / 2;
	sc->binpack = q->spread ? 1.0 - used : used;

	double local = 0, t_s = 0;
	for (size_t i = 0; i < q->n_inputs; i++) {
		const struct sched_input *in = &q->inputs[i];
		if (holds(in, n)) {
			local += (double)in->size;
			continue;
		}
		double bits = (double)in->size * 8.0;
		double best = s->default_rtt_ms / 1000.0 + bits / (n->bw_mbps * 1e6);
		for (size_t h = 0; h < in->n_holders; h++) {
			const struct sched_node *hn = in->holders[h];
			if (!hn)
				continue;
			double bw = fmin(n->bw_mbps, hn->bw_mbps);
			double t = rtt_get(s, hn, n) / 1000.0 + bits / (bw * 1e6);
			if (h == 0 || t < best)
				best = t;
		}
		t_s += best;
	}
	sc->locality = x->in_bytes > 0 ? local / x->in_bytes : 1.0;
	sc->network = 1.0 / (1.0 + t_s);
	/* price x runtime over the dearest node's price x runtime: the runtime cancels. */
	sc->cost = x->max_price > 0 ? 1.0 - n->price / x->max_price : 1.0;
	sc->load = 1.0 - n->load;
	sc->total = x->w[0] * sc->binpack + x->w[1] * sc->locality + x->w[2] * sc->network +
		    x->w[3] * sc->cost + x->w[4] * sc->load;
	if (n == q->avoid)
		sc->total *= AVOID_FACTOR;
}

/* True when a (score sa) ranks before b (score sb): higher score, then lower id. */
static bool ranks_before(double sa, const struct sched_node *a, double sb, const struct sched_node *b)
{
	if (sa != sb)
		return sa > sb;
	return strcmp(a->id, b->id) < 0;
}

/* ---- the limit step ----------------------------------------------------------------------- */

static void ensure_scratch(struct sched *s)
{
	if (s->cap_fcls < s->n_classes) {
		s->cap_fcls = s->n_classes * 2;
		s->fcls = xrealloc(s->fcls, s->cap_fcls * sizeof *s->fcls);
		s->segs = xrealloc(s->segs, s->cap_fcls * sizeof *s->segs);
	}
}

/* True when the class's capacity can hold the request at all. */
static bool class_fits(const struct sched_class *c, const struct sched_req *q)
{
	return q->cpu_millicores <= c->cpu && q->memory_bytes <= c->mem && q->disk_bytes <= c->disk;
}

/*
 * Probes random members of the n classes in list (classes whose capacity is
 * too small are skipped), round-robin from a random class, until k
 * candidates are found or the probe budget is spent. Returns the number of
 * candidates in s->cand.
 */
static size_t probe(struct sched *s, const struct rctx *x, struct sched_class *const *list, size_t n)
{
	size_t nc = 0, budget = (size_t)s->k * PROBES_PER_CANDIDATE;
	size_t off = rng_below(&s->rng, n);
	for (size_t i = 0; i < budget && nc < s->k; i++) {
		const struct sched_class *c = list[(off + i) % n];
		if (!class_fits(c, x->req))
			continue;
		struct sched_node *nd = c->nodes[rng_below(&s->rng, c->n)];
		if (nd->mark == s->gen)
			continue;
		nd->mark = s->gen;
		if (node_check(nd, x->req) == R_OK)
			s->cand[nc++] = nd;
	}
	return nc;
}

/*
 * Scans every member of the n classes in list whose capacity fits. With at
 * most k feasible nodes all are candidates; otherwise k are drawn, one per
 * class in turn (from a random first class) so that distinct classes come
 * first.
 */
static size_t scan_all(struct sched *s, const struct rctx *x, struct sched_class *const *list, size_t n)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++) {
		const struct sched_class *c = list[i];
		s->segs[i].start = total;
		s->segs[i].len = 0;
		if (!class_fits(c, x->req))
			continue;
		if (s->cap_scan < total + c->n) {
			s->cap_scan = (total + c->n) * 2;
			s->scan = xrealloc(s->scan, s->cap_scan * sizeof *s->scan);
		}
		for (size_t j = 0; j < c->n; j++) {
			if (node_check(c->nodes[j], x->req) == R_OK)
				s->scan[total++] = c->nodes[j];
		}
		s->segs[i].len = total - s->segs[i].start;
	}
	if (total <= s->k) {
		memcpy(s->cand, s->scan, total * sizeof *s->cand);
		return total;
	}
	size_t nc = 0;
	for (size_t i = rng_below(&s->rng, n); nc < s->k; i = (i + 1) % n) {
		struct seg *g = &s->segs[i];
		if (g->len == 0)
			continue;
		size_t j = g->start + rng_below(&s->rng, g->len);
		struct sched_node *nd = s->scan[j];
		s->scan[j] = s->scan[g->start + g->len - 1];
		g->len--;
		s->cand[nc++] = nd;
	}
	return nc;
}

/* ---- the why summary ---------------------------------------------------------------------- */

struct why_count {
	const char *text;
	size_t n;
};

static int why_by_text(const void *a, const void *b)
{
	return strcmp(((const struct why_count *)a)->text, ((const struct why_count *)b)->text);
}

static int why_by_count(const void *a, const void *b)
{
	const struct why_count *x = a, *y = b;
	if (x->n != y->n)
		return x->n > y->n ? -1 : 1;
	return strcmp(x->text, y->text);
}

/* Writes "0 of N nodes feasible: ..." counting each node's first failing check. */
static void summarise(struct sched *s, const struct rctx *x, char *why, size_t whylen)
{
	size_t dyn[R_OK] = {0};
	struct why_count *w = xcalloc(s->n_classes + R_OK, sizeof *w);
	size_t nw = 0, feasible = 0;
	for (size_t i = 0; i < s->n_classes; i++) {
		struct sched_class *c = s->classes[i];
		c->rank = class_check(c, x, true, c->why, sizeof c->why);
		c->count = 0;
		for (size_t j = 0; j < c->n; j++) {
			int r = node_check(c->nodes[j], x->req);
			if (r < R_OK && r < c->rank)
				dyn[r]++;
			else if (c->rank < R_OK)
				c->count++;
			else
				feasible++;
		}
		if (c->count)
			w[nw++] = (struct why_count){c->why, c->count};
	}
	for (int r = 0; r < R_OK; r++) {
		if (dyn[r])
			w[nw++] = (struct why_count){rank_text[r], dyn[r]};
	}
	qsort(w, nw, sizeof *w, why_by_text);
	size_t m = 0;
	for (size_t i = 0; i < nw; i++) {
		if (m > 0 && strcmp(w[m - 1].text, w[i].text) == 0)
			w[m - 1].n += w[i].n;
		else
			w[m++] = w[i];
	}
	qsort(w, m, sizeof *w, why_by_count);
	struct buf b;
	buf_init(&b);
	buf_printf(&b, "%zu of %zu nodes feasible", feasible, s->n_nodes);
	for (size_t i = 0; i < m; i++)
		buf_printf(&b, "%s%zu %s", i ? ", " : ": ", w[i].n, w[i].text);
	if (whylen > 0)
		snprintf(why, whylen, "%.*s", (int)b.len, (const char *)b.data);
	buf_free(&b);
	free(w);
}

/* ---- the static verdict cache ----------------------------------------------------------- */

static void sig_strs(struct buf *b, const char *const *v, size_t n)
{
	uint64_t c = n;
	buf_append(b, &c, sizeof c);
	for (size_t i = 0; i < n; i++)
		key_str(b, nz(v[i]));
}

/* Writes the request's signature: everything the static checks read except the resources. */
static void req_sig(struct buf *b, const struct rctx *x)
{
	const struct sched_req *q = x->req;
	uint8_t flags = (uint8_t)(q->hardware | x->code_ok << 1);
	b->len = 0;
	buf_append(b, &flags, 1);
	sig_strs(b, q->tee, q->n_tee);
	sig_strs(b, q->pools, q->n_pools);
	sig_strs(b, q->label_keys, q->n_labels);
	sig_strs(b, q->label_values, q->n_labels);
	sig_strs(b, q->features, q->n_features);
}

/* Returns the classes that pass the request's static checks other than capacity. */
static const struct fcache *cache_get(struct sched *s, const struct rctx *x)
{
	req_sig(&s->sig, x);
	uint64_t h = hash_bytes(s->sig.data, s->sig.len);
	struct fcache *f = &s->cache[h % CACHE_SLOTS];
	if (f->gen == s->class_gen && f->hash == h && f->sig.len == s->sig.len &&
	    memcmp(f->sig.data, s->sig.data, s->sig.len) == 0)
		return f;
	f->gen = s->class_gen;
	f->hash = h;
	f->sig.len = 0;
	buf_append(&f->sig, s->sig.data, s->sig.len);
	if (f->cap < s->n_classes) {
		f->cap = s->n_classes;
		f->cls = xrealloc(f->cls, f->cap * sizeof *f->cls);
	}
	f->n = 0;
	for (size_t i = 0; i < s->n_classes; i++) {
		if (class_check(s->classes[i], x, false, NULL, 0) == R_OK)
			f->cls[f->n++] = s->classes[i];
	}
	return f;
}

/* ---- placement ------------------------------------------------------------------------------ */

int sched_place(struct sched *s, const struct sched_req *req, struct sched_node **out, char *why,
		size_t whylen)
{
	int rc = 0;
	struct rctx x;
	*out = NULL;
	if (whylen > 0)
		why[0] = '\0';
	if (s->n_nodes == 0) {
		snprintf(why, whylen, "no nodes");
		rc = SS_ENOTFOUND;
		goto out;
	}
	ctx_init(s, req, &x);
	s->gen++;
	ensure_scratch(s);
	/*
	 * The statically feasible classes: checked here when there are few,
	 * else taken from the cache (before the capacity check, which probe()
	 * and scan_all() apply per class).
	 */
	struct sched_class *const *list = s->fcls;
	size_t nf = 0, members = 0;
	if (s->n_classes <= CACHE_MIN_CLASSES) {
		for (size_t i = 0; i < s->n_classes; i++) {
			struct sched_class *c = s->classes[i];
			if (class_check(c, &x, true, NULL, 0) == R_OK) {
				s->fcls[nf++] = c;
				members += c->n;
			}
		}
	} else {
		const struct fcache *f = cache_get(s, &x);
		list = f->cls;
		nf = f->n;
		for (size_t i = 0; i < nf && members <= SCAN_ALL_MAX; i++)
			members += class_fits(list[i], req) ? list[i]->n : 0;
	}
	size_t nc = 0;
	if (nf > 0 && members > SCAN_ALL_MAX)
		nc = probe(s, &x, list, nf);
	if (nf > 0 && nc == 0)
		nc = scan_all(s, &x, list, nf);
	if (nc == 0) {
		summarise(s, &x, why, whylen);
		rc = SS_ENOTFOUND;
		goto out;
	}
	struct sched_node *best = NULL;
	double best_score = 0;
	for (size_t i = 0; i < nc; i++) {
		struct scores sc;
		score_node(s, s->cand[i], &x, &sc);
		if (!best || ranks_before(sc.total, s->cand[i], best_score, best)) {
			best = s->cand[i];
			best_score = sc.total;
		}
	}
	*out = best;
out:
	return rc;
}

/* ---- explain --------------------------------------------------------------------------------- */

struct verdict {
	const struct sched_node *n;
	const char *why;        /* NULL when feasible */
	struct scores sc;
};

static int verdict_cmp(const void *a, const void *b)
{
	const struct verdict *x = a, *y = b;
	if (!x->why != !y->why)
		return x->why ? 1 : -1;
	if (!x->why && x->sc.total != y->sc.total)
		return x->sc.total > y->sc.total ? -1 : 1;
	return strcmp(x->n->id, y->n->id);
}

static json_t *real4(double v)
{
	return json_real(round(v * 1e4) / 1e4);
}

json_t *sched_explain(struct sched *s, const struct sched_req *req)
{
	struct rctx x;
	ctx_init(s, req, &x);
	s->gen++;
	for (size_t i = 0; i < s->n_classes; i++) {
		struct sched_class *c = s->classes[i];
		c->rank = class_check(c, &x, true, c->why, sizeof c->why);
	}
	struct verdict *v = s->n_nodes ? xcalloc(s->n_nodes, sizeof *v) : NULL;
	size_t feasible = 0;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct sched_node *n = s->nodes[i];
		int r = node_check(n, req);
		v[i].n = n;
		if (r < R_OK && r < n->cls->rank) {
			v[i].why = rank_text[r];
		} else if (n->cls->rank < R_OK) {
			v[i].why = n->cls->why;
		} else {
			score_node(s, n, &x, &v[i].sc);
			feasible++;
		}
	}
	if (s->n_nodes > 1)
		qsort(v, s->n_nodes, sizeof *v, verdict_cmp);
	json_t *nodes = json_array();
	for (size_t i = 0; i < s->n_nodes; i++) {
		json_t *o;
		if (v[i].why) {
			o = json_pack("{s:s,s:b,s:s}", "node", v[i].n->id, "feasible", 0, "reason",
				      v[i].why);
		} else {
			const struct scores *sc = &v[i].sc;
			o = json_pack("{s:s,s:b,s:o,s:{s:o,s:o,s:o,s:o,s:o}}", "node", v[i].n->id,
				      "feasible", 1, "score", real4(sc->total), "scores", "binpack",
				      real4(sc->binpack), "locality", real4(sc->locality), "network",
				      real4(sc->network), "cost", real4(sc->cost), "load", real4(sc->load));
		}
		if (!o)
			fatal("sched: cannot build the explain JSON");
		json_array_append_new(nodes, o);
	}
	json_t *res = json_pack("{s:I,s:I,s:o,s:o}", "feasible", (json_int_t)feasible, "total",
				(json_int_t)s->n_nodes, "chosen",
				feasible ? json_string(v[0].n->id) : json_null(), "nodes", nodes);
	if (!res)
		fatal("sched: cannot build the explain JSON");
	free(v);
	return res;
}

size_t sched_feasible_count(struct sched *s, const struct sched_req *req)
{
	struct rctx x;
	ctx_init(s, req, &x);
	s->gen++;
	for (size_t i = 0; i < s->n_classes; i++) {
		struct sched_class *c = s->classes[i];
		c->rank = class_check(c, &x, false, NULL, 0);
	}
	size_t feasible = 0;
	for (size_t i = 0; i < s->n_nodes; i++) {
		const struct sched_node *n = s->nodes[i];
		feasible += n->cls->rank >= R_OK && node_check(n, req) >= R_OK;
	}
	return feasible;
}

int sched_fit(struct sched *s, const struct sched_req *req, const struct sched_node *n)
{
	struct rctx x;
	ctx_init(s, req, &x);
	/* The class's checks include its total capacity, which no release can raise. */
	if (class_check(n->cls, &x, true, NULL, 0) != R_OK)
		return SS_ENOTFOUND;
	int r = node_check(n, req);
	if (r == R_OK)
		return 0;
	return r >= R_CPU ? SS_ELIMIT : SS_ENOTFOUND;
}

/* ---- tenants and the pending queue ------------------------------------------------------------- */

struct qtenant;
struct qlevel;

struct qent {
	void *item;
	uint64_t hash;
	struct qtenant *ten;
	struct qlevel *lvl;
	uint32_t cpu;
	int64_t seq;            /* push order; items put back go below every push */
	struct qent *prev, *next;
};

/* The items of one tenant with one priority, in FIFO order. */
struct qlevel {
	int32_t prio;
	struct qent *head, *tail;
};

struct qtenant {
	char *name;
	uint64_t hash;
	double weight;
	uint64_t running;       /* millicores popped and not yet done */
	uint64_t cap;           /* most millicores running at once; 0 = none */
	bool has_cap;           /* cap was set for this tenant (else the default applies) */
	struct qlevel **lv;     /* non-empty levels, highest priority first */
	size_t nlv, caplv;
	size_t n_items;
	size_t active;          /* position in sched_queue.active while n_items > 0 */
};

/*
 * Tenants are created on first use and freed only with the queue, so the
 * names sched_queue_pop() returns stay valid until sched_queue_free().
 */
struct sched_queue {
	struct ptab tenants;
	struct ptab items;
	struct qtenant **all;
	size_t n_all, cap_all;
	struct qtenant **active;  /* tenants with queued items */
	size_t n_active, cap_active;
	size_t len;
	uint64_t default_cap;     /* cap of tenants without their own; 0 = none */
	int64_t back_seq;
	int64_t front_seq;
};

static bool tenant_eq(const void *elem, const void *key)
{
	return strcmp(((const struct qtenant *)elem)->name, key) == 0;
}

static bool item_eq(const void *elem, const void *key)
{
	return ((const struct qent *)elem)->item == key;
}

struct sched_queue *sched_queue_new(void)
{
	struct sched_queue *q = xcalloc(1, sizeof *q);
	ptab_init(&q->tenants);
	ptab_init(&q->items);
	return q;
}

void sched_queue_free(struct sched_queue *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->n_all; i++) {
		struct qtenant *t = q->all[i];
		for (size_t l = 0; l < t->nlv; l++) {
			struct qent *e = t->lv[l]->head;
			while (e) {
				struct qent *next = e->next;
				free(e);
				e = next;
			}
			free(t->lv[l]);
		}
		free(t->lv);
		free(t->name);
		free(t);
	}
	free(q->all);
	free(q->active);
	ptab_free(&q->tenants);
	ptab_free(&q->items);
	free(q);
}

static struct qtenant *tenant_find(const struct sched_queue *q, const char *name)
{
	name = nz(name);
	return ptab_get(&q->tenants, hash_name(name), tenant_eq, name);
}

static struct qtenant *tenant_get(struct sched_queue *q, const char *name, bool create)
{
	struct qtenant *t = tenant_find(q, name);
	if (t || !create)
		return t;
	name = nz(name);
	uint64_t h = hash_name(name);
	t = xcalloc(1, sizeof *t);
	t->name = xstrdup(name);
	t->hash = h;
	t->weight = 1.0;
	ptab_add(&q->tenants, h, t);
	if (q->n_all == q->cap_all) {
		q->cap_all = q->cap_all ? 2 * q->cap_all : 8;
		q->all = xrealloc(q->all, q->cap_all * sizeof *q->all);
	}
	q->all[q->n_all++] = t;
	return t;
}

void sched_queue_set_weight(struct sched_queue *q, const char *tenant, double weight)
{
	if (!(weight > 0) || !isfinite(weight))
		return;
	tenant_get(q, tenant, true)->weight = weight;
}

void sched_queue_set_cap(struct sched_queue *q, const char *tenant, uint64_t millicores)
{
	if (!tenant) {
		q->default_cap = millicores;
		return;
	}
	struct qtenant *t = tenant_get(q, tenant, true);
	t->cap = millicores;
	t->has_cap = true;
}

static uint64_t cap_of(const struct sched_queue *q, const struct qtenant *t)
{
	return t->has_cap ? t->cap : q->default_cap;
}

/* True when t has items and its next one would take it past its cap. */
static bool at_cap(const struct sched_queue *q, const struct qtenant *t)
{
	uint64_t cap = cap_of(q, t);
	return cap && t->n_items && t->running + t->lv[0]->head->cpu > cap;
}

bool sched_queue_held(const struct sched_queue *q, const char *tenant)
{
	const struct qtenant *t = tenant_find(q, tenant);
	return t && at_cap(q, t);
}

uint64_t sched_queue_cap(const struct sched_queue *q, const char *tenant)
{
	const struct qtenant *t = tenant_find(q, tenant);
	return t ? cap_of(q, t) : q->default_cap;
}

uint64_t sched_queue_running(const struct sched_queue *q, const char *tenant)
{
	const struct qtenant *t = tenant_find(q, tenant);
	return t ? t->running : 0;
}

bool sched_queue_tenant_at(const struct sched_queue *q, size_t i, struct sched_queue_tenant *out)
{
	if (i >= q->n_all)
		return false;
	const struct qtenant *t = q->all[i];
	out->name = t->name;
	out->running = t->running;
	out->cap = cap_of(q, t);
	out->weight = t->weight;
	out->queued = t->n_items;
	return true;
}

void sched_queue_charge(struct sched_queue *q, const char *tenant, uint32_t cpu_millicores)
{
	tenant_get(q, tenant, true)->running += cpu_millicores;
}

/* Returns the tenant's level for prio, creating it in order when missing. */
static struct qlevel *level_get(struct qtenant *t, int32_t prio)
{
	size_t lo = 0, hi = t->nlv;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (t->lv[mid]->prio == prio)
			return t->lv[mid];
		if (t->lv[mid]->prio > prio)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (t->nlv == t->caplv) {
		t->caplv = t->caplv ? 2 * t->caplv : 4;
		t->lv = xrealloc(t->lv, t->caplv * sizeof *t->lv);
	}
	memmove(&t->lv[lo + 1], &t->lv[lo], (t->nlv - lo) * sizeof *t->lv);
	struct qlevel *l = xcalloc(1, sizeof *l);
	l->prio = prio;
	t->lv[lo] = l;
	t->nlv++;
	return l;
}

static void level_drop(struct qtenant *t, struct qlevel *l)
{
	size_t i = 0;
	while (t->lv[i] != l)
		i++;
	memmove(&t->lv[i], &t->lv[i + 1], (t->nlv - i - 1) * sizeof *t->lv);
	t->nlv--;
	free(l);
}

static void enqueue(struct sched_queue *q, const char *tenant, int32_t priority,
		    uint32_t cpu_millicores, void *item, bool front)
{
	sched_queue_remove(q, item);
	struct qtenant *t = tenant_get(q, tenant, true);
	struct qlevel *l = level_get(t, priority);
	struct qent *e = xcalloc(1, sizeof *e);
	e->item = item;
	e->hash = hash_ptr(item);
	e->ten = t;
	e->lvl = l;
	e->cpu = cpu_millicores;
	if (front) {
		e->seq = --q->front_seq;
		e->next = l->head;
		if (l->head)
			l->head->prev = e;
		else
			l->tail = e;
		l->head = e;
	} else {
		e->seq = ++q->back_seq;
		e->prev = l->tail;
		if (l->tail)
			l->tail->next = e;
		else
			l->head = e;
		l->tail = e;
	}
	ptab_add(&q->items, e->hash, e);
	if (t->n_items++ == 0) {
		if (q->n_active == q->cap_active) {
			q->cap_active = q->cap_active ? 2 * q->cap_active : 8;
			q->active = xrealloc(q->active, q->cap_active * sizeof *q->active);
		}
		t->active = q->n_active;
		q->active[q->n_active++] = t;
	}
	q->len++;
}

/* Unlinks e from its level and tenant and frees it (the items table is the caller's). */
static void unlink_ent(struct sched_queue *q, struct qent *e)
{
	struct qlevel *l = e->lvl;
	struct qtenant *t = e->ten;
	if (e->prev)
		e->prev->next = e->next;
	else
		l->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		l->tail = e->prev;
	if (!l->head)
		level_drop(t, l);
	if (--t->n_items == 0) {
		struct qtenant *last = q->active[--q->n_active];
		q->active[t->active] = last;
		last->active = t->active;
	}
	q->len--;
	free(e);
}

void sched_queue_push(struct sched_queue *q, const char *tenant, int32_t priority,
		      uint32_t cpu_millicores, void *item)
{
	enqueue(q, tenant, priority, cpu_millicores, item, false);
}

void *sched_queue_pop(struct sched_queue *q, const char **tenant)
{
	struct qtenant *best = NULL;
	double best_ratio = 0;
	for (size_t i = 0; i < q->n_active; i++) {
		struct qtenant *t = q->active[i];
		/* A tenant whose next item would take it past its cap waits for its own tasks to end. */
		if (at_cap(q, t))
			continue;
		double ratio = (double)t->running / t->weight;
		if (!best || ratio < best_ratio ||
		    (ratio == best_ratio && t->lv[0]->head->seq < best->lv[0]->head->seq)) {
			best = t;
			best_ratio = ratio;
		}
	}
	if (tenant)
		*tenant = best ? best->name : NULL;
	if (!best)
		return NULL;
	struct qent *e = best->lv[0]->head;
	void *item = e->item;
	best->running += e->cpu;
	ptab_del(&q->items, e->hash, item_eq, item);
	unlink_ent(q, e);
	return item;
}

void sched_queue_unpop(struct sched_queue *q, const char *tenant, int32_t priority,
		       uint32_t cpu_millicores, void *item)
{
	sched_queue_done(q, tenant, cpu_millicores);
	enqueue(q, tenant, priority, cpu_millicores, item, true);
}

void sched_queue_done(struct sched_queue *q, const char *tenant, uint32_t cpu_millicores)
{
	struct qtenant *t = tenant_get(q, tenant, false);
	if (t)
		t->running = t->running > cpu_millicores ? t->running - cpu_millicores : 0;
}

bool sched_queue_remove(struct sched_queue *q, void *item)
{
	struct qent *e = ptab_del(&q->items, hash_ptr(item), item_eq, item);
	if (!e)
		return false;
	unlink_ent(q, e);
	return true;
}

size_t sched_queue_len(const struct sched_queue *q)
{
	return q->len;
}
