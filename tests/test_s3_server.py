"""The real S3 server for tests (SeaweedFS ``weed mini``, tests/helpers/s3.py) behaves like S3."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from botocore.exceptions import ClientError

import tests.helpers.s3 as s3_helpers
from tests.helpers.procs import OWNER_FILE, ProcessStartError, scratch_dir
from tests.helpers.s3 import RunningS3, S3Ports, start_seaweedfs, unique_bucket_name


def _error(exc: BaseException) -> tuple[str, int]:
    """(error code, HTTP status) of a botocore ClientError."""
    assert isinstance(exc, ClientError), repr(exc)
    return exc.response["Error"]["Code"], exc.response["ResponseMetadata"]["HTTPStatusCode"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _decode_addr(hex_ip: str) -> str:
    raw = bytes.fromhex(hex_ip)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))  # 4 host-order words
    return socket.inet_ntop(socket.AF_INET6, words)


def _tcp_listeners(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket (IPv4 and IPv6) the process holds."""
    inodes = _socket_inodes(pid)
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A = LISTEN
                hex_ip, hex_port = local.split(":")
                found.add((_decode_addr(hex_ip), int(hex_port, 16)))
    return found


def _unix_listeners(pid: int) -> set[str]:
    """Paths of the unix sockets the process listens on (as bound, i.e. in its mount namespace)."""
    inodes = _socket_inodes(pid)
    paths = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        # Num RefCount Protocol Flags Type St Inode [Path]; Flags 00010000 = __SO_ACCEPTCON (listening)
        if len(fields) >= 8 and fields[6] in inodes and int(fields[3], 16) & 0x10000:
            paths.add(fields[7])
    return paths


def _tmp_grpc_sockets(ports: S3Ports) -> list[Path]:
    return [
        p
        for p in Path("/tmp").glob("seaweedfs-*-grpc-*.sock")
        if int(p.stem.rsplit("-", 1)[1]) in ports.grpc().values()
    ]


# --------------------------------------------------------------------------- the shared server


async def test_put_get_list_paginated_delete(s3_server: RunningS3, s3_bucket: str) -> None:
    async with s3_server.client() as s3:
        for i in range(25):
            record = {"image": "demo/app", "tag": f"v{i}"}
            await s3.put_object(
                Bucket=s3_bucket,
                Key=f"records/demo-app/v{i:02d}.json",
                Body=json.dumps(record).encode(),
                ContentType="application/json",
                Metadata={"build-id": str(i)},
            )
        await s3.put_object(Bucket=s3_bucket, Key="other/x.json", Body=b"{}")

        got = await s3.get_object(Bucket=s3_bucket, Key="records/demo-app/v03.json")
        assert json.loads(await got["Body"].read()) == {"image": "demo/app", "tag": "v3"}
        assert got["ContentType"] == "application/json"
        assert got["Metadata"] == {"build-id": "3"}
        head = await s3.head_object(Bucket=s3_bucket, Key="records/demo-app/v03.json")
        assert head["ETag"] == got["ETag"]

        keys: list[str] = []
        pages = 0
        token: str | None = None
        while True:
            kwargs = {"Bucket": s3_bucket, "Prefix": "records/demo-app/", "MaxKeys": 10}
            if token:
                kwargs["ContinuationToken"] = token
            page = await s3.list_objects_v2(**kwargs)
            pages += 1
            keys += [o["Key"] for o in page.get("Contents", [])]
            assert len(page.get("Contents", [])) <= 10
            if not page.get("IsTruncated"):
                break
            token = page["NextContinuationToken"]
        assert pages == 3
        assert keys == sorted(f"records/demo-app/v{i:02d}.json" for i in range(25))

        paginator = s3.get_paginator("list_objects_v2")
        via_paginator = [
            o["Key"]
            async for page in paginator.paginate(Bucket=s3_bucket, PaginationConfig={"PageSize": 7})
            for o in page.get("Contents", [])
        ]
        assert via_paginator == sorted([*keys, "other/x.json"])

        top = await s3.list_objects_v2(Bucket=s3_bucket, Delimiter="/")
        assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["other/", "records/"]

        await s3.delete_object(Bucket=s3_bucket, Key="records/demo-app/v03.json")
        with pytest.raises(ClientError) as missing:
            await s3.get_object(Bucket=s3_bucket, Key="records/demo-app/v03.json")
        assert _error(missing.value) == ("NoSuchKey", 404)

        rest = [k for k in via_paginator if k != "records/demo-app/v03.json"]
        deleted = await s3.delete_objects(Bucket=s3_bucket, Delete={"Objects": [{"Key": k} for k in rest]})
        assert len(deleted["Deleted"]) == 25
        assert not deleted.get("Errors")
        assert (await s3.list_objects_v2(Bucket=s3_bucket)).get("KeyCount", 0) == 0


async def test_wrong_credentials_are_refused(s3_server: RunningS3, s3_bucket: str) -> None:
    async with s3_server.client(secret_key="not-the-secret", retries={"max_attempts": 1}) as bad:
        with pytest.raises(ClientError) as wrong_secret:
            await bad.list_objects_v2(Bucket=s3_bucket)
        with pytest.raises(ClientError) as wrong_secret_put:
            await bad.put_object(Bucket=s3_bucket, Key="x", Body=b"x")
    assert _error(wrong_secret.value) == ("SignatureDoesNotMatch", 403)
    assert _error(wrong_secret_put.value) == ("SignatureDoesNotMatch", 403)

    session = s3_server.session()
    async with session.client(
        "s3",
        endpoint_url=s3_server.endpoint,
        config=s3_server.client_config(retries={"max_attempts": 1}),
        aws_access_key_id="nobody",
        aws_secret_access_key="whatever",
    ) as unknown:
        with pytest.raises(ClientError) as unknown_key:
            await unknown.list_buckets()
    assert _error(unknown_key.value) == ("InvalidAccessKeyId", 403)

    async with httpx.AsyncClient() as http:  # unsigned
        assert (await http.get(f"{s3_server.endpoint}/")).status_code == 403
        assert (await http.get(f"{s3_server.endpoint}/{s3_bucket}")).status_code == 403
    async with s3_server.client() as good:
        assert (await good.list_objects_v2(Bucket=s3_bucket)).get("KeyCount", 0) == 0


async def test_conditional_put_if_none_match_answers_412(s3_server: RunningS3, s3_bucket: str) -> None:
    """SeaweedFS 4.48 enforces ``If-None-Match: *`` (rclone's serve s3 ignores it)."""
    async with s3_server.client() as s3:
        await s3.put_object(Bucket=s3_bucket, Key="lock.json", Body=b'{"n": 1}', IfNoneMatch="*")
        with pytest.raises(ClientError) as exists:
            await s3.put_object(Bucket=s3_bucket, Key="lock.json", Body=b'{"n": 2}', IfNoneMatch="*")
        assert _error(exists.value) == ("PreconditionFailed", 412)
        body = await (await s3.get_object(Bucket=s3_bucket, Key="lock.json"))["Body"].read()
        assert body == b'{"n": 1}'  # not overwritten


async def test_missing_bucket_and_non_empty_delete_behave_like_aws(
    s3_server: RunningS3, s3_bucket: str
) -> None:
    """-s3.autoCreateBucket=false and -s3.allowDeleteBucketNotEmpty=false (weed's defaults differ)."""
    async with s3_server.client() as s3:
        with pytest.raises(ClientError) as no_bucket:
            await s3.put_object(Bucket=unique_bucket_name("absent"), Key="k", Body=b"v")
        assert _error(no_bucket.value) == ("NoSuchBucket", 404)
        await s3.put_object(Bucket=s3_bucket, Key="k", Body=b"v")
        with pytest.raises(ClientError) as not_empty:
            await s3.delete_bucket(Bucket=s3_bucket)
        assert _error(not_empty.value) == ("BucketNotEmpty", 409)
        with pytest.raises(ClientError) as taken:
            await s3.create_bucket(Bucket=s3_bucket)
        assert _error(taken.value)[1] == 409  # BucketAlreadyExists / BucketAlreadyOwnedByYou


def test_s3_bucket_fixture_and_conveniences(s3_server: RunningS3, s3_bucket: str) -> None:
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", s3_bucket)
    assert s3_bucket.startswith("t-test-s3-bucket-fixture-and-conveniences-")
    assert unique_bucket_name("x") != unique_bucket_name("x")
    assert len(unique_bucket_name("A" * 200)) <= 63
    assert re.fullmatch(r"t-[0-9a-f]{8}", unique_bucket_name("___"))
    names = {b["Name"] for b in s3_server.sync_client.list_buckets()["Buckets"]}
    assert s3_bucket in names
    assert not any(n.startswith("readiness-") for n in names)  # the readiness probe cleans up
    assert s3_server.sync_client.list_objects_v2(Bucket=s3_bucket)["KeyCount"] == 0

    assert s3_server.endpoint == f"http://127.0.0.1:{s3_server.port}"
    assert s3_server.env() == {
        "AWS_ACCESS_KEY_ID": s3_server.access_key,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
        "AWS_REGION": "us-east-1",
    }
    config = s3_server.client_config()
    assert config.s3 == {"addressing_style": "path"}
    assert config.signature_version == "s3v4"
    assert config.request_checksum_calculation == "when_required"
    assert config.response_checksum_validation == "when_required"
    assert json.loads(s3_server.config_path.read_text())["identities"][0]["credentials"] == [
        {"accessKey": s3_server.access_key, "secretKey": s3_server.secret_key}
    ]
    assert s3_server.alive()
    assert "Start Seaweed S3 API Server" in s3_server.log_path.read_text()


def test_listens_only_on_loopback_on_the_chosen_ports(s3_server: RunningS3) -> None:
    listeners = _tcp_listeners(s3_server.pid)
    assert {addr for addr, _ in listeners} == {"127.0.0.1"}
    assert {port for _, port in listeners} == s3_server.ports.listening()  # nothing on a default port
    assert s3_server.ports.admin_grpc == s3_server.ports.admin + 10000  # what weed's worker dials

    unix = _unix_listeners(s3_server.pid)
    data_dir = str(s3_server.data_dir)
    assert {f"{data_dir}/filer.sock", f"{data_dir}/s3.sock"} <= unix
    grpc_names = {f"seaweedfs-{svc}-grpc-{port}.sock" for svc, port in s3_server.ports.grpc().items()}
    if s3_server.isolated_tmp:  # bound as /tmp/... inside its mount namespace, really in data_dir/tmp
        assert unix == {f"{data_dir}/filer.sock", f"{data_dir}/s3.sock"} | {f"/tmp/{n}" for n in grpc_names}
        assert {p.name for p in (s3_server.data_dir / "tmp").iterdir()} == grpc_names
        assert _tmp_grpc_sockets(s3_server.ports) == []
    else:
        assert {p.name for p in _tmp_grpc_sockets(s3_server.ports)} == grpc_names


# --------------------------------------------------------------------------- private servers


@pytest.mark.parametrize("isolate_tmp", [None, False], ids=["auto", "no-namespace"])
def test_start_and_stop_leave_nothing_behind(isolate_tmp: bool | None) -> None:
    t0 = time.monotonic()
    with start_seaweedfs(access_key="other-key", secret_key="other-secret", isolate_tmp=isolate_tmp) as s3:
        started = time.monotonic() - t0
        pid, data_dir, ports = s3.pid, s3.data_dir, s3.ports
        assert _pid_alive(pid)
        assert (data_dir / "weed.log").is_file()
        assert s3.env()["AWS_SECRET_ACCESS_KEY"] == "other-secret"
        assert s3.create_bucket("private-bucket") == "private-bucket"
        s3.sync_client.put_object(Bucket="private-bucket", Key="k", Body=b"v")
        assert s3.sync_client.get_object(Bucket="private-bucket", Key="k")["Body"].read() == b"v"
        t1 = time.monotonic()
    stopped = time.monotonic() - t1
    print(
        f"\nweed mini (isolate_tmp={s3.isolated_tmp}): ready after {started:.2f}s, stopped in {stopped:.2f}s"
    )
    assert not _pid_alive(pid)
    assert not data_dir.exists()
    assert _tmp_grpc_sockets(ports) == []
    assert stopped < 3.0  # SIGTERM, SIGKILL after 0.5 s: no 4-13 s graceful shutdown
    assert not list(Path("/tmp").glob("weed.*"))  # -logtostderr: no glog files


def test_stop_is_idempotent_and_the_endpoint_goes_away() -> None:
    with start_seaweedfs() as s3:
        s3.stop()
        assert not s3.alive()
        s3.stop()
        with pytest.raises(httpx.ConnectError):
            httpx.get(s3.endpoint, timeout=2)


def test_start_failure_reports_the_log_tail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_helpers, "_s3_json", lambda *a: "{not json\n")
    with pytest.raises(ProcessStartError) as failed, start_seaweedfs(timeout=20):
        pytest.fail("started with a broken s3.json")
    message = str(failed.value)
    assert "exited with code 255" in message
    assert "fail to load config file" in message  # weed's fatal line, from the log tail


def test_start_retries_when_a_port_was_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    real_choose = s3_helpers._choose_ports
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        calls: list[S3Ports] = []

        def choose() -> S3Ports:
            ports = real_choose()
            if not calls:
                ports = S3Ports(**{**ports.__dict__, "filer": taken_port})
            calls.append(ports)
            return ports

        monkeypatch.setattr(s3_helpers, "_choose_ports", choose)
        with start_seaweedfs() as s3:
            assert len(calls) == 2
            assert s3.ports == calls[1]
            assert "not available" not in s3.log_tail(200)  # the log holds this attempt only


def test_sockets_of_a_killed_run_are_swept() -> None:
    """Without a mount namespace the /tmp gRPC sockets are listed in the scratch dir; a later start
    removes those of a test process that died before its teardown."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = scratch_dir(s3_helpers.SCRATCH_PREFIX)
    holder = scratch_dir("imglife-s3test-sockets-")
    try:
        sock_path = holder / "seaweedfs-master-grpc-1.sock"
        with socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(sock_path))
        (stale / OWNER_FILE).write_text(str(dead.pid))
        (stale / "tmp-sockets.txt").write_text(f"{sock_path}\n")
        s3_helpers._sweep_stale_tmp_sockets()
        assert not sock_path.exists()
        assert not stale.exists()
    finally:
        shutil.rmtree(holder, ignore_errors=True)
        shutil.rmtree(stale, ignore_errors=True)
