"""A minimal evd client: join a room, read its history, say hello, print what arrives.

    pip install websockets
    TOKEN=$(cargo run -q --release -- token --user u1 --org o1 --role organizer)
    python3 examples/chat.py "$TOKEN" [ws://127.0.0.1:8080/ws]
"""
import asyncio
import json
import sys

import websockets


async def main(token: str, url: str) -> None:
    async with websockets.connect(f"{url}?token={token}", subprotocols=["evd.v1.json"]) as ws:
        print("<", await ws.recv())  # HELLO
        await ws.send(json.dumps({"op": "join_room", "ref": 1, "room": "session:S1", "history": 10}))
        await ws.send(json.dumps({"op": "send_message", "ref": 2, "room": "session:S1",
                                  "text": "hello", "client_id": "demo-1"}))
        # Replies, broadcasts and presence arrive as objects or as arrays of objects.
        for _ in range(4):
            frame = json.loads(await ws.recv())
            for event in frame if isinstance(frame, list) else [frame]:
                print("<", json.dumps(event))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "ws://127.0.0.1:8080/ws"))
