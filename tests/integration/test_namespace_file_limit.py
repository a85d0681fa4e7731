"""The namespace file size limit (``KESTREL_NAMESPACE_FILE_MAX_BYTES``) through the CLI and the
API: a file over it is refused with its path and the limit, nothing of it is stored, and an
existing file of that path keeps its content."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from controlplane.cli import app
from tests.integration.harness import ServerThread
from tests.integration.harness import test_settings as settings_for
from worker_sdk.client import KestrelClient
from worker_sdk.errors import InvalidArgumentError


@pytest.fixture(scope="module")
def server(database_url, tmp_path_factory):
    thread = ServerThread(settings_for(database_url, data_dir=tmp_path_factory.mktemp("nslimit"),
                                       namespace_file_max_bytes=1024)).start()
    yield thread
    thread.stop()


def test_a_file_over_the_limit_is_refused_and_nothing_is_stored(server, tmp_path):
    (tmp_path / "small.txt").write_text("ok\n")
    (tmp_path / "big.bin").write_bytes(b"x" * 5000)
    client = KestrelClient(server.address, timeout=30)
    try:
        client.upload_namespace_file("tests.nslimit", "big.bin", tmp_path / "small.txt")  # an older, small version
        result = CliRunner().invoke(app, ["namespace", "files", "upload", "tests.nslimit", str(tmp_path),
                                          "--server", server.address])
        assert result.exit_code != 0
        assert "'big.bin' (namespace tests.nslimit) is larger than the namespace file limit of 1024 bytes" in result.output
        assert "KESTREL_NAMESPACE_FILE_MAX_BYTES" in result.output
        with pytest.raises(InvalidArgumentError, match="limit of 1024 bytes"):
            client.upload_namespace_file("tests.nslimit", "dir/big.bin", tmp_path / "big.bin")
        files = {f.uri.rsplit("/_files/", 1)[1]: f.size for f in client.list_namespace_files("tests.nslimit")}
        assert files == {"big.bin": 3}  # the refused uploads stored nothing; the old version is intact
        client.download_file("kestra:///tests/nslimit/_files/big.bin", tmp_path / "back.txt")
        assert (tmp_path / "back.txt").read_text() == "ok\n"
        exactly = tmp_path / "exact.bin"
        exactly.write_bytes(b"y" * 1024)
        assert client.upload_namespace_file("tests.nslimit", "exact.bin", exactly).size == 1024
    finally:
        client.close()
