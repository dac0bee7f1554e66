/* cross/check-c.sh links this against the SQLite that libsqlite3-sys's build script compiled for
 * an ARM target and runs it under qemu-user: the cross-compiled SQLite opens a file in WAL mode
 * with synchronous=FULL (storebox's journal settings; fdatasync from LIBSQLITE3_FLAGS), commits
 * and reads back. */
#include <stdio.h>
#include <stdlib.h>
#include "sqlite3.h"

static int fail(sqlite3 *db, const char *what) {
    fprintf(stderr, "%s: %s\n", what, db ? sqlite3_errmsg(db) : "no db");
    return 1;
}

int main(int argc, char **argv) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    if (argc != 2) return 2;
    if (sqlite3_open(argv[1], &db) != SQLITE_OK) return fail(db, "open");
    if (sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
                     "CREATE TABLE t(seq INTEGER PRIMARY KEY, body TEXT);"
                     "BEGIN IMMEDIATE; INSERT INTO t(body) VALUES ('sale'), ('refund'); COMMIT;",
                     NULL, NULL, NULL) != SQLITE_OK)
        return fail(db, "write");
    if (sqlite3_prepare_v2(db, "SELECT sqlite_version(), count(*), max(seq) FROM t", -1, &st,
                           NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        return fail(db, "read");
    printf("SQLite %s: %d rows, last seq %d\n", sqlite3_column_text(st, 0),
           sqlite3_column_int(st, 1), sqlite3_column_int(st, 2));
    sqlite3_finalize(st);
    return sqlite3_close(db) == SQLITE_OK ? 0 : fail(db, "close");
}
