"""A run in a process of its own, and the clients that attach to it.

| module | owns |
| --- | --- |
| `server.py` | the Unix socket in the run directory: connections, the handshake, bounded queues per client |
| `run_host.py` | `RunHost`: commands from clients, the status, each tick's frame to every viewer |
| `mirror.py` | what the run keeps for a late attacher (`RunMirror`) and what the client reads back (`Snapshot`) |
| `run_process.py` | `serve_run`: the loop of the run process `nktui` starts |
| `remote.py` | `RemoteRunClient`: the run seen through its socket, with the in-process client's methods |
| `spawn.py` | starting a run process in a session of its own |
| `live_runs.py` | the live runs under a folder (`nktui ls`, `nktui attach`), stale sockets removed |

The wire format is the protocol's (`nktui.protocol.wire`). Imports neither torch nor Textual.
"""
