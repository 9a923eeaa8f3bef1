"""A test worker: serves its busy state over HTTP on $PORT_BUSY, and readiness on $PORT.

It is busy while the file $CTL/busy-<index> exists. MODE=garbage answers busy probes with a broken body,
MODE=slow never answers them in time. READY_AFTER delays its readiness port by that many seconds.
"""

import http.server
import os
import sys
import threading
import time

index = os.environ["EBB_REPLICA_INDEX"]
control = os.path.join(os.environ["CTL"], f"busy-{index}")
mode = os.environ.get("MODE", "status")


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if mode == "garbage":
            body = b"{busy: maybe"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if mode == "slow":
            time.sleep(5)
        busy = os.path.exists(control)
        self.send_response(200 if busy else 204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(port: int, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
    """Listen now (so that "ready" below means it), answer in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()


print(f"env PORT={os.environ.get('PORT')} PORT_BUSY={os.environ.get('PORT_BUSY')}", flush=True)
if "PORT_BUSY" in os.environ:
    serve(int(os.environ["PORT_BUSY"]), Handler)
time.sleep(float(os.environ.get("READY_AFTER", "0")))
if "PORT" in os.environ and os.environ.get("PORT") != os.environ.get("PORT_BUSY"):
    serve(int(os.environ["PORT"]), Handler)
print("ready", flush=True)
while True:
    time.sleep(60)
    sys.stdout.flush()
