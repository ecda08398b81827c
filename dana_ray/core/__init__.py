"""The foundation every layer stands on: input checks, registries and their options, plug-ins, command-line
errors. Imports nothing else of dana_ray."""
