"""The sharded, resumable offline scoring job."""
