"""The descriptor pool of the generated modules: theirs alone, so tritonclient's copy of the same protos (in the
default pool, at whatever version a user has) can be imported in the same process."""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
