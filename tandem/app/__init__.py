"""Entry points: the command line, ``tandem serve`` and its processes (watcher, batch
endpoint), and the demo. They may import any floor; nothing imports them.
"""
