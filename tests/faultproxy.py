"""A relay to PostgreSQL that loses the answer to a COMMIT: the write is made, the client never learns it.

That is the in-doubt commit of a database restart (or a network cut) at the worst moment,
made on demand: the COMMIT reaches the server, which commits and answers; the relay drops
the answer and closes the connection, so the driver sees a lost connection instead.
"""

import socket
import threading

from tests.tcpproxy import TcpProxy

# psycopg commits with the simple query protocol: 'Q', its length (4 + 7), "COMMIT\0".
COMMIT_MESSAGE = b"Q\x00\x00\x00\x0bCOMMIT\x00"


class CommitDropper(TcpProxy):
    def __init__(self, target_host: str, target_port: int):
        super().__init__(target_host, target_port)
        self._to_drop = 0
        self.dropped = 0

    def drop_commits(self, count: int = 1) -> None:
        """Lose the answers to the next `count` COMMITs (made by any connection)."""
        with self._lock:
            self._to_drop += count

    def _take(self) -> bool:
        with self._lock:
            if self._to_drop <= 0:
                return False
            self._to_drop -= 1
            self.dropped += 1
            return True

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        doomed = threading.Event()
        threading.Thread(target=self._requests, args=(client, upstream, doomed), daemon=True).start()
        threading.Thread(target=self._answers, args=(upstream, client, doomed), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := client.recv(65536):
                if COMMIT_MESSAGE in data and self._take():
                    doomed.set()  # before sending: the answer cannot overtake the flag
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    @staticmethod
    def _answers(upstream: socket.socket, client: socket.socket, doomed: threading.Event) -> None:
        try:
            while data := upstream.recv(65536):
                if doomed.is_set():
                    break  # the server committed and said so; the client will never hear it
                client.sendall(data)
        except OSError:
            pass
        finally:
            _close(upstream, client)


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()
