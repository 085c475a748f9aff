"""What ``snakemake --report`` shows: the report's figures, HTML tables, and the records
in and out of every data-building step (``data_flow``).
"""
