/*
 * Field: a real nginx reverse proxy in front of the server, and a client
 * process SIGKILLed and restarted behind it. Helpers in field_env.h.
 */
#include "field_env.h"

/* A real nginx reverse proxy                                                */
/* ------------------------------------------------------------------------ */

/* The child of the nginx test: sends until killed. */
static int child_send(const char *url, const char *db)
{
    tether_client *c = NULL;
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.url = url;
    cfg.db_path = db;
    cfg.proxy = "";
    cfg.backoff_base_ms = 20;
    cfg.backoff_cap_ms = 200;
    if (client_create_start(&cfg, &c) != TETHER_OK) {
        return 3;
    }
    for (int i = 0; i < 400; i++) {
        send_tagged(c, 100, 64);
        sleep_ms(1); /* a steady stream, so the kills land mid-stream */
    }
    sleep(60); /* the parent kills us long before this */
    return 4;
}

TEST(nginx_reverse_proxy_client_kill_and_restart)
{
    srv v;
    nginx ng;
    char sdb[600], cdb[600], url[128];
    memset(&ng, 0, sizeof ng);
    srv_init(&v);
    v.cfg.db_path = tt_path(sdb, sizeof sdb, "nginx-s.db");
    /* the server acknowledges every 1000 messages only, so a kill between two ACKs
     * leaves messages the server stored but the client never heard about */
    v.cfg.ack_every = 1000;
    v.cfg.ack_delay_ms = 10000;
    CHECK_OK(srv_start(&v));
    if (nginx_start(&ng, 0, v.port) != 0) {
        tt_fail(__FILE__, __LINE__, "nginx did not start");
        srv_free(&v);
        return;
    }
    snprintf(url, sizeof url, "ws://127.0.0.1:%u/", ng.port);
    tt_path(cdb, sizeof cdb, "nginx-c.db");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/proc/self/exe", "field_nginx_test", "--child-send", url, cdb, (char *)NULL);
        _exit(127);
    }
    CHECK(rec_wait_count(&v.rec, 3000, WAIT_MS));
    /* nginx restarts mid-stream: every proxied connection drops */
    uint16_t port = ng.port;
    nginx_stop(&ng);
    CHECK_EQ_INT(nginx_start(&ng, port, v.port), 0);
    uint64_t before = rec_count(&v.rec);
    CHECK(rec_wait_count(&v.rec, before + 3000, WAIT_MS));
    for (int i = 0; i < 4000; i++) { /* between two of the server's ACKs */
        uint64_t n = rec_count(&v.rec) % 1000;
        if (n >= 200 && n <= 800) {
            break;
        }
        sleep_ms(1);
    }
    /* the client process dies mid-stream: what nginx accepted but the server never
     * acknowledged is still in the client's outbox */
    kill(pid, SIGKILL);
    int status = 0;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    uint64_t delivered_at_kill = rec_count(&v.rec);

    cli k;
    field_cli_init(&k, "ws", "127.0.0.1", ng.port);
    k.cfg.db_path = cdb;
    CHECK_OK(tether_client_create(&k.cfg, &k.c));
    uint64_t last = 0, acked = 0, pending = 0;
    CHECK_OK(tether_client_last_seq(k.c, &last));
    CHECK_OK(tether_client_acked(k.c, &acked));
    CHECK_OK(tether_client_pending(k.c, &pending, NULL));
    fprintf(stderr, "  at the kill: %llu assigned, %llu acked, %llu delivered to the server\n",
            (unsigned long long)last, (unsigned long long)acked,
            (unsigned long long)delivered_at_kill);
    CHECK(acked <= delivered_at_kill);
    CHECK(last >= delivered_at_kill);
    CHECK(last > acked); /* killed mid-stream: written (to nginx) is not acknowledged */
    CHECK_EQ_U64(pending, last - acked);
    CHECK_OK(tether_client_start(k.c));
    CHECK_OK(tether_client_wait_acked(k.c, WAIT_MS));
    /* exactly once, in order: the unacked tail was resent and the server kept one copy */
    rec_check_exact(&v.rec, last, "server behind nginx after a restart and a SIGKILL");
    CHECK(v.rec.last_open_resumed == 1);
    cli_free(&k);
    nginx_stop(&ng);
    srv_free(&v);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc == 4 && strcmp(argv[1], "--child-send") == 0) {
        return child_send(argv[2], argv[3]);
    }
    RUN(nginx_reverse_proxy_client_kill_and_restart);
    return tt_finish();
}
