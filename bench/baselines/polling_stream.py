"""Baseline: a log stream that polls the database once a second for new rows (the design of
the system this service replaces). Serves GET /jobs/<id>/logs as SSE from the same SQLite file.

    python bench/baselines/polling_stream.py <sqlite file> <port>
"""
import asyncio
import json
import sqlite3
import sys


async def handle(reader, writer, db_path):
    request = (await reader.readline()).decode()
    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass
    job_id = request.split()[1].split("/")[2].replace("-", "")
    writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n")
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    last = 0
    try:
        while True:
            rows = db.execute(
                "SELECT event_id, message, severity FROM job_logs_logline WHERE job_id = ? AND event_id > ? "
                "ORDER BY event_id", (job_id, last),
            ).fetchall()
            for event_id, message, severity in rows:
                payload = {"log": {"event_id": event_id, "event_message": message, "severity": severity}}
                writer.write(f"id: {event_id}\ndata: {json.dumps(payload)}\n\n".encode())
                last = event_id
            await writer.drain()
            await asyncio.sleep(1.0)  # the polling interval
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        db.close()
        writer.close()


async def main(db_path: str, port: int):
    server = await asyncio.start_server(lambda r, w: handle(r, w, db_path), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
