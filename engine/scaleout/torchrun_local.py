"""torchrun for one machine whose rendezvous port listens on 127.0.0.1 only.

torchrun's static rendezvous opens its TCP store on every interface (`*:port`), unauthenticated,
for as long as the run lasts. On one machine nothing outside needs it, so this entry point
registers a `loopback` rendezvous (the static one with its store on a socket bound to 127.0.0.1)
and then runs torchrun unchanged: `python -m engine.scaleout.torchrun_local --rdzv_backend=loopback ...`.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

BACKEND = "loopback"


def _creator(params: Any) -> Any:
    """A static rendezvous of one machine whose store listens on loopback only."""
    import datetime

    from torch.distributed import TCPStore
    from torch.distributed.elastic.rendezvous.static_tcp_rendezvous import StaticTCPRendezvous
    from torch.distributed.elastic.rendezvous.utils import parse_rendezvous_endpoint

    class LoopbackRendezvous(StaticTCPRendezvous):
        def next_rendezvous(self) -> Any:  # noqa: D102
            if not self._store:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", self.master_port))
                sock.listen(128)
                self._listener = sock  # keep it open for the store's lifetime
                self._store = TCPStore(
                    "127.0.0.1",
                    self.master_port,
                    self.world_size,
                    True,
                    self.timeout,
                    multi_tenant=True,
                    master_listen_fd=sock.fileno(),
                )
            return super().next_rendezvous()

        def get_backend(self) -> str:  # noqa: D102
            return BACKEND

    _, port = parse_rendezvous_endpoint(params.endpoint, -1)
    timeout = int(params.config.get("timeout", 600))
    rdzv = LoopbackRendezvous("127.0.0.1", port, 0, 1, params.run_id, timeout)
    rdzv.timeout = datetime.timedelta(seconds=timeout)
    return rdzv


def main() -> None:
    """Register the loopback rendezvous, then hand the command line to torchrun."""
    from torch.distributed.elastic.rendezvous import rendezvous_handler_registry
    from torch.distributed.run import main as torchrun_main

    rendezvous_handler_registry.register(BACKEND, _creator)
    torchrun_main(sys.argv[1:])


if __name__ == "__main__":
    main()
