"""The `unetflow` command line: the outermost layer. It imports every other package of
the project (`unet_core` <- `unetflow` <- `tune` <- `flows`); none of them imports it.
"""
