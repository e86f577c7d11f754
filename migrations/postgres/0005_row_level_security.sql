-- Row-level security on every tenant-keyed table, as a second wall behind the `tenant = $1` of
-- each statement: a read made for a tenant runs as the role `syncropel_tenant`, with the tenant
-- in the setting `syncropel.tenant` (see `crates/store/src/postgres/bound.rs`), and the policies
-- below let that role see and change that tenant's rows and no others. A connection that never
-- set the tenant sees no rows at all. The steward's own login role (the tables' owner) is not
-- bound: its writer commits several tenants per transaction and its platform work (leases,
-- purges, token lookups in batches) spans tenants.
--
-- The role is shared by every database of the server. A login role that may not create roles
-- needs it made beforehand, with membership (deploy/postgres-init.sh does):
--   CREATE ROLE syncropel_tenant NOLOGIN; GRANT syncropel_tenant TO steward;
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'syncropel_tenant') THEN
        BEGIN
            CREATE ROLE syncropel_tenant NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- the migration of another database made it meanwhile
        END;
    END IF;
    -- What the steward does with the role is SET ROLE: try it, and grant it when refused. (From
    -- Postgres 16 a role that created another holds it with ADMIN only, which does not let it
    -- switch to it; its membership must say SET.)
    BEGIN
        SET LOCAL ROLE syncropel_tenant;
        RESET ROLE;
    EXCEPTION WHEN insufficient_privilege THEN
        IF current_setting('server_version_num')::int >= 160000 THEN
            EXECUTE format('GRANT syncropel_tenant TO %I WITH SET TRUE', current_user);
        ELSE
            EXECUTE format('GRANT syncropel_tenant TO %I', current_user);
        END IF;
    END;
END
$$;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['records', 'tenant_counters', 'threads', 'service_accounts',
                             'tokens', 'federation_state', 'pull_leases']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY tenant_rows ON %I TO syncropel_tenant '
            'USING (tenant = current_setting(''syncropel.tenant'', true)) '
            'WITH CHECK (tenant = current_setting(''syncropel.tenant'', true))', t);
        EXECUTE format('GRANT SELECT ON %I TO syncropel_tenant', t);
    END LOOP;
END
$$;
