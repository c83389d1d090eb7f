/*
 * tether bench: the subcommand's entry. The benchmark itself lives in bench/
 * (a static library linked in when the build has TETHER_BENCH=ON).
 */
#include "cli.h"

#ifdef TETHER_HAVE_BENCH
#include "bench.h"

int cli_bench(int argc, char **argv)
{
    return tether_bench_main(argc, argv);
}
#endif
