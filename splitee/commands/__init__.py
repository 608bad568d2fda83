"""The ``splitee`` subcommands, one module per area; importing a module registers its commands.

Each module imports :data:`splitee.cli.main` and decorates its commands onto it, so the CLI
module itself stays a short index: the group, the settings, and the list of areas.
"""
