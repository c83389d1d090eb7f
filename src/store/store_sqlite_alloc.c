/* SQLite's allocations through the counting allocator of the internal build
 * (store_testhooks.h, common/alloc.h). Compiled into tether_internal only. */
#include <sqlite3.h>

#include <tether/tether.h>

#include "common/alloc.h"
#include "common/util.h"
#include "store_testhooks.h"

static sqlite3_mem_methods real; /* SQLite's default allocator */

static void *route_malloc(int n)
{
    return tether__alloc_should_fail() ? NULL : real.xMalloc(n);
}

static void *route_realloc(void *p, int n)
{
    return tether__alloc_should_fail() ? NULL : real.xRealloc(p, n);
}

int tether__store_sqlite_route_alloc(void)
{
    static sqlite3_mem_methods routed;
    if (routed.xMalloc) {
        return TETHER_OK;
    }
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &real) != SQLITE_OK) {
        return tether__fail(TETHER_ESTORE, "SQLite is already initialised");
    }
    routed = real;
    routed.xMalloc = route_malloc;
    routed.xRealloc = route_realloc;
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &routed) != SQLITE_OK) {
        routed.xMalloc = NULL;
        return tether__fail(TETHER_ESTORE, "SQLite is already initialised");
    }
    return TETHER_OK;
}
