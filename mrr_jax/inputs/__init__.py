"""From text to arrays: the prompt template, batch packing, training groups."""
