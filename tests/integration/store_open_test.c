/*
 * What a client or server says when its store cannot be its own: a SQLite
 * file another writer holds (src/store/store_sqlite_lock.c), a PostgreSQL
 * URI given to a client; and that no message echoes a password
 * (src/common/redact.c).
 */
#include <sys/wait.h>
#include <unistd.h>

#include <tether/tether.h>

#include "harness.h"

static int msg_has(const char *s)
{
    if (strstr(tether_errmsg(), s)) {
        return 1;
    }
    fprintf(stderr, "  errmsg \"%s\" lacks \"%s\"\n", tether_errmsg(), s);
    return 0;
}

static int msg_lacks(const char *s)
{
    if (!strstr(tether_errmsg(), s)) {
        return 1;
    }
    fprintf(stderr, "  errmsg \"%s\" holds \"%s\"\n", tether_errmsg(), s);
    return 0;
}

static int server_on(const char *db, tether_server **out)
{
    tether_server_config cfg;
    tether_server_config_init(&cfg);
    cfg.listen_host = "127.0.0.1";
    cfg.db_path = db;
    *out = NULL;
    return tether_server_create(&cfg, out);
}

static int client_on(const char *db, int shared, tether_client **out)
{
    tether_client_config cfg;
    tether_client_config_init(&cfg);
    cfg.url = "ws://127.0.0.1:1/";
    cfg.db_path = db;
    cfg.store_shared = shared;
    *out = NULL;
    return tether_client_create(&cfg, out);
}

/* In a child process: 0 when creating a server (client) on db is refused with
 * TETHER_ESTORE naming this test's pid, 1 when it succeeds, 2 otherwise. */
static int child_create(const char *db, int server, int shared)
{
    long parent = (long)getpid();
    pid_t c = fork();
    if (c == 0) {
        tether_server *s = NULL;
        tether_client *k = NULL;
        int rc = server ? server_on(db, &s) : client_on(db, shared, &k);
        char want[64];
        snprintf(want, sizeof want, "another process (pid %ld)", parent);
        int refused = rc == TETHER_ESTORE && strstr(tether_errmsg(), want) != NULL;
        tether_server_destroy(s);
        tether_client_destroy(k);
        _exit(rc == TETHER_OK ? 1 : refused ? 0 : 2);
    }
    CHECK(c > 0);
    int status = 0;
    CHECK_EQ_INT((int)waitpid(c, &status, 0), (int)c);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 3;
}

/* Two servers on one SQLite file numbered a moving client's echoes twice
 * and lost them; the second is now refused at create. */
TEST(a_second_server_on_one_file_is_refused)
{
    char db[512];
    tt_path(db, sizeof db, "srv.db");
    tether_server *a = NULL, *b = NULL;
    CHECK_OK(server_on(db, &a));
    CHECK_ERR(server_on(db, &b), TETHER_ESTORE);
    CHECK(b == NULL);
    CHECK(msg_has(db));
    CHECK(msg_has("another handle in this process has this store open for writing"));
    CHECK_EQ_INT(child_create(db, 1, 0), 0);
    tether_server_destroy(a);
    CHECK_EQ_INT(child_create(db, 1, 0), 1);
    CHECK_OK(server_on(db, &b));
    tether_server_destroy(b);
}

/* store_shared lets readers in, never a second writer. */
TEST(a_second_client_on_one_file_is_refused_shared_or_not)
{
    char db[512];
    tt_path(db, sizeof db, "cli.db");
    for (int shared = 0; shared <= 1; shared++) {
        tether_client *a = NULL, *b = NULL;
        CHECK_OK(client_on(db, shared, &a));
        for (int other = 0; other <= 1; other++) {
            CHECK_ERR(client_on(db, other, &b), TETHER_ESTORE);
            CHECK(b == NULL);
            CHECK(msg_has("has this store open for writing"));
            CHECK_EQ_INT(child_create(db, 0, other), 0);
        }
        tether_client_destroy(a);
        CHECK_EQ_INT(child_create(db, 0, !shared), 1);
    }
}

/* The client has no PostgreSQL store: a URI is refused, not opened as a
 * SQLite file of that name, and its password is not printed. */
TEST(a_client_refuses_a_postgresql_uri)
{
    static const char *const uris[] = {
        "postgresql://app:s3cret-pw@127.0.0.1:5432/tether",
        "postgres://app:s3cret-pw@db.example/tether?sslmode=require",
    };
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK_EQ_INT(chdir(tt_tmpdir()), 0);
    for (size_t i = 0; i < sizeof uris / sizeof uris[0]; i++) {
        tether_client *k = (tether_client *)1;
        CHECK_ERR(client_on(uris[i], 1, &k), TETHER_ECONFIG);
        CHECK(k == NULL);
        CHECK(msg_has("PostgreSQL URI"));
        CHECK(msg_has("server's"));
        CHECK(msg_lacks("s3cret-pw"));
        CHECK(access("postgresql:", F_OK) != 0 && access("postgres:", F_OK) != 0);
    }
    CHECK_EQ_INT(chdir(cwd), 0);
}

/* Messages that echo a url, a proxy or a PostgreSQL URI keep its password out. */
TEST(no_message_echoes_a_password)
{
    tether_client_config cfg;
    tether_client *k = NULL;
    tether_client_config_init(&cfg);
    cfg.url = "ws://app:s3cret-pw@127.0.0.1:99999/";
    CHECK_ERR(tether_client_create(&cfg, &k), TETHER_ECONFIG);
    CHECK(msg_has("ws://app:***@127.0.0.1:99999/"));
    CHECK(msg_lacks("s3cret-pw"));

    tether_client_config_init(&cfg);
    cfg.url = "ws://127.0.0.1:1/";
    cfg.proxy = "http://proxyuser:s3cret-pw@[::1:3128";
    CHECK_ERR(tether_client_create(&cfg, &k), TETHER_ECONFIG);
    CHECK(msg_has("proxyuser:***@"));
    CHECK(msg_lacks("s3cret-pw"));

    tether_server_config scfg;
    tether_server *s = NULL;
    tether_server_config_init(&scfg);
    scfg.listen_host = "127.0.0.1";
    scfg.db_path = "postgresql://app:s3cret-pw@127.0.0.1:1/tether?password=s3cret-pw&bogus=1";
    CHECK(tether_server_create(&scfg, &s) != TETHER_OK);
    CHECK(s == NULL);
    CHECK(msg_lacks("s3cret-pw"));
}

int main(void)
{
    RUN(a_second_server_on_one_file_is_refused);
    RUN(a_second_client_on_one_file_is_refused_shared_or_not);
    RUN(a_client_refuses_a_postgresql_uri);
    RUN(no_message_echoes_a_password);
    return tt_finish();
}
