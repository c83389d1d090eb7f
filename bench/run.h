/* The orchestrator: which configurations run, and running them as child processes. */
#ifndef TETHER_BENCH_RUN_H
#define TETHER_BENCH_RUN_H

#include "bench.h"

#define BENCH_CFG_MAX 64
#define BENCH_ONLY_MAX 8

typedef struct bench_run_opts {
    int quick;                        /* the under-a-minute subset */
    const char *out;                  /* output directory */
    int repeat;                       /* runs per configuration (median) */
    const char *only[BENCH_ONLY_MAX]; /* name filters, any of which selects */
    int n_only;                       /* filters given */
    double scale;                     /* message count multiplier */
    int verbose;                      /* print every run */
    const char *pg;                   /* --pg URI: add rows whose server store is there */
} bench_run_opts;

/* matrix.c: the name of a store in configuration names and peer options. */
const char *bench_store_name(bench_store s);

/* matrix.c: fills the configuration matrix; returns how many. */
size_t bench_matrix(const bench_run_opts *ro, bench_cfg *c, size_t max);

/* Runs every configuration ro->repeat times and fills in the medians and the
 * ratios to the raw baselines. Returns 1 if any run failed, else 0. */
int bench_run_all(const bench_run_opts *ro, bench_cfg *c, size_t n);

#endif
