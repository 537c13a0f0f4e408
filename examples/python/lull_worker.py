#!/usr/bin/env python3
"""A lull worker in Python on paho-mqtt: wait for a lease, run a command under
it, heartbeat on a timer, stop the command when the lease is revoked or
expires, and release with an outcome.

    python3 lull_worker.py --broker 127.0.0.1:1883 --worker py-1 -- make -j4

MQTT v5 (response topic + correlation data) with a fallback to v3.1.1
(`reply_to` + `request_id` in the payload), chosen at connect time or forced
with --mqtt 3. With --secure the per-worker topics of lull's secure broker
config are used (docs/security.md). docs/workers.md walks through the protocol.

Needs only paho-mqtt (Debian: python3-paho-mqtt; 1.6 or 2.x).
Exit status: the command's own, 69 when lulld cannot be reached, 75 when no
lease came within --wait.
"""

import argparse
import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

EX_UNAVAILABLE = 69
EX_TEMPFAIL = 75


def say(text):
    print("lull_worker: " + text, file=sys.stderr, flush=True)


class LeaseClient:
    """Request/response over MQTT plus lease notices, on paho's network thread."""

    def __init__(self, host, port, worker_id, mqtt_version=5, secure=False,
                 username=None, password=None, prefix=""):
        self.worker_id = worker_id
        self.secure = secure
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""
        self.inbox = self.topic("workers/%s/reply/%s" % (worker_id, secrets.token_hex(6)))
        self.pending = {}  # correlation id -> queue of one reply
        self.notices = queue.Queue()  # lease notices (dicts)
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.refused = None
        self.version = None
        for version in ([5, 3] if mqtt_version == 5 else [3]):
            if self._connect(host, port, version, username, password):
                self.version = version
                return
            if self.refused != "version":
                break
        raise ConnectionError("cannot connect to %s:%d: %s" % (host, port, self.refused))

    def topic(self, relative):
        return self.prefix + relative

    # -- connection ---------------------------------------------------------------
    def _connect(self, host, port, version, username, password):
        protocol = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
        client_id = "lull-py-%s-%s" % (self.worker_id, secrets.token_hex(4))
        if hasattr(mqtt, "CallbackAPIVersion"):  # paho-mqtt 2.x
            self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id,
                                      protocol=protocol)
        else:
            self.client = mqtt.Client(client_id=client_id, protocol=protocol)
        if username:
            self.client.username_pw_set(username, password)
        # The last will: if this process dies, lulld ends its leases at once.
        self.client.will_set(self.topic("stats/worker/" + self.worker_id),
                             json.dumps({"v": 1, "state": "offline"}), qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.connected.clear()
        self.refused = None
        try:
            if version == 5:
                self.client.connect(host, port, keepalive=30, clean_start=True)
            else:
                self.client.connect(host, port, keepalive=30)
        except OSError as e:
            self.refused = str(e)
            return False
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self.connected.is_set() and not self.refused:
            time.sleep(0.05)
        if self.connected.is_set():
            return True
        self.client.loop_stop()
        self.client.disconnect()
        self.refused = self.refused or "no CONNACK"
        return False

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        code = rc.value if hasattr(rc, "value") else rc
        if code != 0:
            # v3.1.1 "unacceptable protocol version" is 1; v5 "unsupported" 132.
            self.refused = "version" if code in (1, 132) else "refused (%s)" % rc
            return
        client.subscribe(self.inbox, qos=1)
        if self.secure:
            client.subscribe(self.topic("workers/%s/lease/+/state" % self.worker_id), qos=1)
        client.publish(self.topic("stats/worker/" + self.worker_id),
                       json.dumps({"v": 1, "state": "online", "job_types": []}),
                       qos=1, retain=True)
        self.connected.set()

    def close(self, state="offline"):
        """Says the worker is gone (the worker status schema's offline, as the
        last will would), then disconnects."""
        info = self.client.publish(self.topic("stats/worker/" + self.worker_id),
                                   json.dumps({"v": 1, "state": state}), qos=1, retain=True)
        info.wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()

    # -- messages -----------------------------------------------------------------
    def _on_message(self, client, userdata, msg):
        try:
            doc = json.loads(msg.payload.decode("utf-8"))
        except ValueError:
            return
        if msg.topic == self.inbox:
            key = None
            props = getattr(msg, "properties", None)
            if props is not None and hasattr(props, "CorrelationData"):
                key = props.CorrelationData.decode("utf-8", "replace")
            elif isinstance(doc, dict):
                key = doc.get("request_id")
            with self.lock:
                waiter = self.pending.pop(key, None)
            if waiter is not None:
                waiter.put(doc)
        elif msg.topic.endswith("/state") and isinstance(doc, dict):
            self.notices.put(doc)

    def call(self, topic, body, timeout=10.0):
        """Publishes `body` on `topic` and waits for its reply (None on timeout)."""
        key = secrets.token_hex(8)
        body = dict(body, v=1)
        if not self.secure:
            body["worker_id"] = self.worker_id
        waiter = queue.Queue(maxsize=1)
        with self.lock:
            self.pending[key] = waiter
        if self.version == 5:
            props = Properties(PacketTypes.PUBLISH)
            props.ResponseTopic = self.inbox
            props.CorrelationData = key.encode()
            props.ContentType = "application/json"
            self.client.publish(self.topic(topic), json.dumps(body), qos=1, properties=props)
        else:
            body["reply_to"] = self.inbox
            body["request_id"] = key
            self.client.publish(self.topic(topic), json.dumps(body), qos=1)
        try:
            return waiter.get(timeout=timeout)
        except queue.Empty:
            with self.lock:
                self.pending.pop(key, None)
            return None

    def lease_topic(self, lease_id, action):
        if self.secure:
            return "scheduler/%s/lease/%s/%s" % (self.worker_id, lease_id, action)
        return "scheduler/lease/%s/%s" % (lease_id, action)

    def request(self, fields, timeout):
        topic = ("scheduler/%s/lease/request" % self.worker_id if self.secure
                 else "scheduler/lease/request")
        return self.call(topic, fields, timeout)

    def watch(self, lease_id):
        """Notices of this lease; in secure mode they already come to our inbox."""
        if not self.secure:
            self.client.subscribe(self.topic("scheduler/lease/%s/state" % lease_id), qos=1)


def parse_broker(text):
    text = text.split("://", 1)[-1]
    host, _, port = text.rpartition(":")
    return (host or "127.0.0.1", int(port)) if port.isdigit() else (text, 1883)


def run(args):
    host, port = parse_broker(args.broker)
    try:
        lc = LeaseClient(host, port, args.worker, args.mqtt, args.secure, args.user,
                         args.password, args.topic_prefix)
    except ConnectionError as e:
        say(str(e))
        return EX_UNAVAILABLE
    say("connected with MQTT %s" % ("v5" if lc.version == 5 else "v3.1.1"))
    interrupted = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda s, f: interrupted.append(s))

    # 1. Ask until granted (a denial says when to ask again).
    request = {"job_type": args.job_type or os.path.basename(args.command[0]),
               "cost_class": args.cost_class, "priority": args.priority}
    if args.host:
        request["host_id"] = args.host
    started = time.monotonic()
    while True:
        reply = lc.request(request, args.timeout)
        if reply is None:
            say("no reply from lulld within %ss" % args.timeout)
            lc.close()
            return EX_UNAVAILABLE
        if reply.get("ok") is False:
            say("request refused: %s: %s" % (reply["error"]["code"], reply["error"]["message"]))
            lc.close()
            return 64
        if reply.get("approved"):
            break
        retry = max(0.5, reply.get("retry_after_sec", 5))
        if args.wait and time.monotonic() - started + retry > args.wait:
            say("no lease within %ss: %s" % (args.wait, reply.get("reason")))
            lc.close()
            return EX_TEMPFAIL
        say("waiting %.1fs: %s" % (retry, reply.get("reason")))
        time.sleep(retry)
        if interrupted:
            lc.close()
            return 128 + interrupted[0]
    lease_id = reply["lease_id"]
    interval = reply["limits"]["heartbeat_interval_sec"]
    say("lease %s on %s (fencing token %s)" % (lease_id, reply["host_id"], reply["fencing_token"]))

    # 2. Watch the lease's notices, then run the command.
    lc.watch(lease_id)
    env = dict(os.environ, LULL_LEASE_ID=lease_id, LULL_FENCING_TOKEN=str(reply["fencing_token"]))
    child = subprocess.Popen(args.command, env=env, start_new_session=True)
    lost = None
    next_beat = time.monotonic()  # at once: catches a revoke before we subscribed
    stop_sent = None
    while child.poll() is None:
        now = time.monotonic()
        if lost is None and now >= next_beat:
            beat = lc.call(lc.lease_topic(lease_id, "heartbeat"), {}, timeout=interval)
            if beat is None:
                say("no heartbeat reply")  # keep trying until the TTL runs out
            elif beat.get("ok") is False:
                lost = "heartbeat refused: " + beat["error"]["message"]
            next_beat = now + interval
        try:
            notice = lc.notices.get(timeout=0.2)
            if notice.get("lease_id") == lease_id and notice.get("state") in ("REVOKED", "EXPIRED"):
                lost = "lease %s: %s" % (notice["state"].lower(), notice.get("reason", ""))
        except queue.Empty:
            pass
        if (lost or interrupted) and stop_sent is None:
            say("stopping the command: %s" % (lost or "interrupted"))
            os.killpg(child.pid, signal.SIGTERM)
            stop_sent = time.monotonic()
        if stop_sent is not None and time.monotonic() - stop_sent > args.grace:
            os.killpg(child.pid, signal.SIGKILL)
    code = child.returncode if child.returncode >= 0 else 128 - child.returncode

    # 3. Release with the outcome (also after a revoke: it says the work stopped).
    outcome = {"outcome": "succeeded" if code == 0 and not lost else "failed",
               "result": {"exit_code": code},
               "reason": lost or ("interrupted" if interrupted else "command exited")}
    if outcome["outcome"] == "failed":
        outcome["error"] = lost or "exit status %d" % code
    rel = lc.call(lc.lease_topic(lease_id, "release"), outcome, timeout=args.timeout)
    if rel is None or rel.get("ok") is False:
        say("release: %s" % (rel["error"]["message"] if rel else "no reply"))
    else:
        say("released %s: %s" % (lease_id, outcome["outcome"]))
    lc.close()
    return code


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--broker", default=os.environ.get("LULL_BROKER", "127.0.0.1:1883"))
    p.add_argument("--worker", default=os.environ.get("LULL_WORKER_ID", socket.gethostname().split(".")[0]))
    p.add_argument("--user", default=os.environ.get("LULL_USERNAME"))
    p.add_argument("--password", default=os.environ.get("LULL_PASSWORD"))
    p.add_argument("--secure", action="store_true", help="per-worker topics (secure broker)")
    p.add_argument("--topic-prefix", default=os.environ.get("LULL_TOPIC_PREFIX", ""))
    p.add_argument("--mqtt", type=int, choices=[3, 5], default=5, help="5, falling back to 3.1.1")
    p.add_argument("--cost-class", default="NORMAL")
    p.add_argument("--priority", default="NORMAL")
    p.add_argument("--host", help="host whose capacity the work uses")
    p.add_argument("--job-type")
    p.add_argument("--wait", type=float, default=0, help="give up after this many seconds")
    p.add_argument("--grace", type=float, default=10, help="SIGTERM to SIGKILL, seconds")
    p.add_argument("--timeout", type=float, default=10, help="seconds to wait for each reply")
    p.add_argument("command", nargs="+", help="CMD ARGS... (after --)")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
