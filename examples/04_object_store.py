"""An atlas store in object storage: write, reopen, read in bulk, count requests, see a conflict.

Runs against a local S3 endpoint (the moto server, started here on 127.0.0.1) when moto is
installed, else against an obstore ``LocalStore`` in a temporary directory. Against real S3 you
would pass your bucket URL and credentials instead, e.g.
``atlas.Atlas.open("s3://my-bucket/sst", region="eu-west-1")``.

    python examples/04_object_store.py
"""

from __future__ import annotations

import logging
import pickle
import tempfile

import numpy as np

import atlas
from atlas.storage import CountingStorage, open_storage


def start_s3():
    """(URL, store options, stop) of a moto S3 server with an empty bucket, or None."""
    try:
        import boto3
        from moto.server import ThreadedMotoServer
    except ImportError:
        return None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 **credentials).create_bucket(Bucket="example")
    options = {
        "endpoint": endpoint, "region": "us-east-1", "access_key_id": "testing",
        "secret_access_key": "testing", "virtual_hosted_style_request": False,
        "client_options": {"allow_http": True},  # moto speaks plain http
    }
    return "s3://example/sst", options, server.stop


def main() -> None:
    s3 = start_s3()
    if s3 is not None:
        location, options, stop = s3
        print(f"using a local S3 endpoint: {location} at {options['endpoint']}")
    else:
        from obstore.store import LocalStore

        location = LocalStore(tempfile.mkdtemp(prefix="atlas-example-"))
        options, stop = {}, (lambda: None)
        print(f"moto is not installed; using {location}")
    try:
        run(location, options)
    finally:
        stop()


def run(location, options: dict) -> None:
    days = [f"2024-01-{d:02d}" for d in range(1, 11)]
    rng = np.random.default_rng(0)
    fields = {day: (280 + 10 * rng.standard_normal((90, 180))).astype(np.float32)
              for day in days}

    # 1. Create and fill: segments go up first, then the manifest by one conditional PUT.
    with atlas.Atlas.create(location, **options) as store:
        for day in days:
            ds = store.create_dataset(day)
            ds.define_array("sst", "float32", ["lat", "lon"], [90, 180],
                            chunk_shape=[45, 90], fill_value=np.nan)
            ds.write_array("sst", [0, 0], fields[day])
            ds.set_attribute("date", day)
    print(f"wrote {len(days)} datasets, generation {store.generation}")

    # 2. Reopen read-only and read a window of every day at once, counting the requests.
    counting = CountingStorage(open_storage(location, read_only=True, **options))
    reader = atlas.Atlas.open(counting)
    opened = counting.requests
    window = reader.read_array_across_stacked("sst", days, start=[30, 60], shape=[20, 40])
    first = counting.requests - opened
    counting.reset()
    reader.read_array_across_stacked("sst", days, start=[30, 60], shape=[20, 40])
    again = counting.requests
    expected = np.stack([fields[d][30:50, 60:100] for d in days])
    assert np.array_equal(window, expected)
    print(f"stacked read {window.shape}: open {opened} request, first read {first} "
          f"(catalog, segment footer, blocks), next read {again} (decoded blocks cached)")

    # 3. Handles pickle as a small description: this is what dask ships to its workers.
    clone = pickle.loads(pickle.dumps(reader))
    assert np.array_equal(clone.open_dataset(days[3]).read_array("sst"), fields[days[3]])

    # 4. Two writers. Changes to different datasets merge: the second flush finds a newer
    #    commit and re-applies its own on top. Changes to the same thing conflict: the loser
    #    raises ConflictError naming it, and nothing of its flush is committed.
    first_writer = atlas.Atlas.open(location, **options)
    second_writer = atlas.Atlas.open(location, **options)
    first_writer.open_dataset(days[0]).set_attribute("checked", True)
    second_writer.open_dataset(days[1]).set_attribute("checked", True)
    first_writer.flush()
    second_writer.flush()  # merged, no error
    first_writer = atlas.Atlas.open(location, **options)
    second_writer = atlas.Atlas.open(location, **options)
    first_writer.open_dataset(days[2]).set_attribute("reviewer", "ana")
    second_writer.delete_dataset(days[2])
    first_writer.flush()
    try:
        second_writer.flush()
    except atlas.ConflictError as err:
        print(f"second writer: ConflictError: ...{str(err).split('conflict: ')[1][:60]}...")
    else:
        raise AssertionError("the second writer should have hit a conflict")
    final = atlas.Atlas.open(location, **options)
    assert final.list_datasets() == days
    assert all(final.open_dataset(d).get_attribute("checked") for d in days[:2])
    assert final.open_dataset(days[2]).get_attribute("reviewer") == "ana"
    print(f"after the conflict the store holds all {len(final.list_datasets())} days and both "
          "writers' merged changes")


if __name__ == "__main__":
    main()
