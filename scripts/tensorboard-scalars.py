#!/usr/bin/env python3
"""Prints the scalars of a TensorBoard log directory as JSON, read by the real `tensorboard`
package, for scripts and for ddptrain's tests:

    scripts/tensorboard-scalars.py runs/r1/tb
    {"records": [{"file": "events.out.tfevents…", "step": 50, "tag": "train/loss", "value": 1.93, "wall_time": …}, …],
     "accumulated": {"train/loss": [[50, 1.93], …], …}, "versions": {"events.out.tfevents…": "brain.Event:2"}}

"records" lists every scalar of every event file in file order, as stored (a step logged twice
shows twice), read with TensorBoard's own TFRecord reader: a bad CRC or a truncated record is an
error here (TensorBoard's loaders would stop reading the file silently). "accumulated" is what
TensorBoard's UI shows, per tag as [step, value] pairs; "versions" is each file's first record's
file_version. Needs `pip install tensorboard`.
"""
import json
import os
import sys

from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat import tf
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub import pywrap_tensorflow


def events(path):
    """Every Event in the file, decoded as written (simple_value stays a float)."""
    reader = pywrap_tensorflow.PyRecordReader_New(path.encode(), 0, b"", None)
    while True:
        try:
            reader.GetNext()
        except tf.errors.OutOfRangeError:
            return
        yield event_pb2.Event.FromString(reader.record())


def main(logdir):
    records, versions = [], {}
    for name in sorted(f for f in os.listdir(logdir) if "tfevents" in f):
        for event in events(os.path.join(logdir, name)):
            versions.setdefault(name, event.file_version)
            for value in event.summary.value:
                records.append({"file": name, "step": event.step, "tag": value.tag,
                                "value": value.simple_value, "wall_time": event.wall_time})
    accumulator = event_accumulator.EventAccumulator(logdir, size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    accumulated = {tag: [[s.step, s.value] for s in accumulator.Scalars(tag)]
                   for tag in accumulator.Tags()[event_accumulator.SCALARS]}
    json.dump({"records": records, "accumulated": accumulated, "versions": versions}, sys.stdout)
    print()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tensorboard-scalars.py LOGDIR")
    main(sys.argv[1])
