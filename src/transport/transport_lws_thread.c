/* Which thread is the transport's service thread (transport.h). */
#include <pthread.h>

#include "transport_lws_int.h"

int tether__tp_on_service_thread(const tether__tp *tp)
{
    /* tp->thread is written by pthread_create() before the thread runs, and
     * tp->started right after, by the starting thread under its owner's lock,
     * which every callback takes; so on the service thread both are set. */
    return tp && tp->started && pthread_equal(tp->thread, pthread_self());
}
