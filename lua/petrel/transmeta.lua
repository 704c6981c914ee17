-- petrel.transmeta: the integer keys of Kitex's TTHeader entries
-- (cloudwego/kitex pkg/remote/transmeta), for headers tables:
-- ctx.headers[transmeta.LOG_ID], petrel.with(c, { headers = {
-- [transmeta.LOG_ID] = "..." } }). Values are strings (RPC_TIMEOUT: ms).
return {
  MESH_VERSION = 0, TRANSPORT_TYPE = 1, LOG_ID = 2, FROM_SERVICE = 3, FROM_CLUSTER = 4,
  FROM_IDC = 5, TO_SERVICE = 6, TO_CLUSTER = 7, TO_IDC = 8, TO_METHOD = 9, ENV = 10,
  DEST_ADDRESS = 11, RPC_TIMEOUT = 12, READ_TIMEOUT = 13, RING_HASH_KEY = 14, DDP_TAG = 15,
  WITH_MESH_HEADER = 16, CONNECT_TIMEOUT = 17, SPAN_CONTEXT = 18, SHORT_CONNECTION = 19,
  FROM_METHOD = 20, STRESS_TAG = 21, MSG_TYPE = 22, HTTP_CONTENT_TYPE = 23,
  RAW_RING_HASH_KEY = 24, LB_TYPE = 25,
}
