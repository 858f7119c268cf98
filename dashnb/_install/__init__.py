"""Beyond the clone: what an installed dashnb carries and the commands that use it.

    $ dashnb notebooks ~/dashnb-notebooks     # copy the tutorial notebooks out of the package
    $ dashnb lab ~/dashnb-notebooks           # ...and open JupyterLab there with the project's settings
    $ dashnb workshop                         # the latency lab in presenter mode (Voila, offline)

`resources` finds the packaged files (in a wheel, or in a checkout installed with ``pip install -e``),
`copy` copies the notebooks without ever overwriting an edited one, `launch` builds the JupyterLab and
Voila command lines, and `commands` is their command-line face.
"""
