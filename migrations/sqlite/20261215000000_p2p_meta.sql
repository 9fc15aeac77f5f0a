-- Peer-to-peer transfer of input files (issue 14): what peers verify a
-- file's bytes against, computed by the coordinator when it is uploaded
-- (its BLAKE3 hash and size, the p2p engine's encoding). NULL: not known
-- (uploaded before; such a file only comes from the coordinator).
ALTER TABLE files ADD COLUMN p2p_meta BLOB;
