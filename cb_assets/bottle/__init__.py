"""The bottle: a real experiment run offline — task image, model server, engine, registry."""
