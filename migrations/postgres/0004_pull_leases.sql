-- Pull jobs of hosted tenants, shared by the replicas: a job runs on the replica holding its
-- lease; leases are renewed well before `lease_until`, and a dead replica's jobs are claimed
-- by the others once theirs run out (claims use FOR UPDATE SKIP LOCKED, so replicas never wait
-- on each other).
CREATE TABLE pull_leases (
    tenant      text   NOT NULL,
    source      text   NOT NULL,
    thread      text   NOT NULL,
    holder      text,
    lease_until bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, source, thread)
);
CREATE INDEX pull_leases_due ON pull_leases (lease_until);
