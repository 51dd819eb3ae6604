"""An app with a module-level database connection, as the README's post_fork example has."""

import json
import os
import sqlite3

DB_PATH = os.environ["DB_APP_PATH"]


class Database:
    def __init__(self) -> None:
        self.connect()

    def connect(self) -> None:
        self.connection = sqlite3.connect(DB_PATH, check_same_thread=False)
        self.opened_in = os.getpid()


db = Database()


def app(environ, start_response):
    count = db.connection.execute("select count(*) from sqlite_master").fetchone()[0]
    body = json.dumps({"pid": os.getpid(), "opened_in": db.opened_in, "tables": count}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
