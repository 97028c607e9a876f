/*
 * sysinfo.h - what the agent reports about its machine: capabilities at
 * start, load with each heartbeat. Reads /proc and statvfs only.
 */
#ifndef SS_SYSINFO_H
#define SS_SYSINFO_H

#include <stddef.h>
#include <stdint.h>

struct sysinfo_caps {
	uint32_t cpu_cores;
	uint64_t memory_bytes;   /* MemTotal */
	uint64_t disk_bytes;     /* free+used of the filesystem holding data_dir */
	char **features;         /* sorted, owned; a curated subset of /proc/cpuinfo flags */
	size_t n_features;
	char hostname[64];
};

/* Fills caps. Missing /proc files give zeros, not errors. */
int sysinfo_caps(const char *data_dir, struct sysinfo_caps *caps);
void sysinfo_caps_free(struct sysinfo_caps *caps);

/*
 * Parses the "flags" line of a /proc/cpuinfo text and returns the features
 * seeswarm reports (aes, avx, avx2, avx512f, sha_ni, vaes, pclmulqdq, rdrand,
 * rdseed, sse4_2, bmi2, adx, sev, sev_es, sev_snp, tdx_guest, sgx, ...),
 * sorted and de-duplicated. Exposed for tests and fuzzing.
 */
int sysinfo_parse_cpuinfo(const char *text, char ***features, size_t *n);

struct sysinfo_load_state {
	uint64_t prev_total, prev_idle; /* from /proc/stat, 0 before the first sample */
};

struct sysinfo_load {
	uint32_t cpu_permille;   /* busy share of all CPUs since the last sample, 0..1000 */
	uint64_t memory_used_bytes; /* MemTotal - MemAvailable */
	uint32_t load1_centi;    /* 1-minute load average x 100 */
};

/* Samples the current load, updating st. */
int sysinfo_load(struct sysinfo_load_state *st, struct sysinfo_load *out);

#endif
