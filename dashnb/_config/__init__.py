"""PoolConfig: the Java SDK's seven settings, their checks, their Java and dashscope 2.x forms, and their table."""
