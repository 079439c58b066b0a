-- Version 15: an address belongs to one organisation, and only that organisation's row, venues
-- and contacts can refer to it. Before, an address was a shared row that anybody could name by
-- id: another organisation's address id attached to your contact could then be read through
-- your address list. Held by composite foreign keys, so no code path can get around it.

ALTER TABLE catalog.addresses ADD COLUMN organization_id uuid REFERENCES catalog.organizations (id);

-- Each address goes to the organisation whose row, venue or contact referred to it first.
UPDATE catalog.addresses a SET organization_id = o.id
  FROM catalog.organizations o WHERE o.address_id = a.id;
UPDATE catalog.addresses a SET organization_id = v.organization_id
  FROM catalog.venues v WHERE v.address_id = a.id AND a.organization_id IS NULL;
UPDATE catalog.addresses a SET organization_id = c.organization_id
  FROM catalog.contacts c WHERE c.address_id = a.id AND a.organization_id IS NULL;

-- A venue or contact of another organisation that referred to it gets a copy of its own.
DO $$
DECLARE
    r record;
    copy uuid;
BEGIN
    FOR r IN SELECT 'venue' AS kind, v.id, v.organization_id, v.address_id FROM catalog.venues v
               JOIN catalog.addresses a ON a.id = v.address_id WHERE a.organization_id <> v.organization_id
             UNION ALL
             SELECT 'contact', c.id, c.organization_id, c.address_id FROM catalog.contacts c
               JOIN catalog.addresses a ON a.id = c.address_id WHERE a.organization_id <> c.organization_id
    LOOP
        INSERT INTO catalog.addresses (street, city, state, zip_code, country, organization_id)
        SELECT street, city, state, zip_code, country, r.organization_id FROM catalog.addresses WHERE id = r.address_id
        RETURNING id INTO copy;
        IF r.kind = 'venue' THEN
            UPDATE catalog.venues SET address_id = copy WHERE id = r.id;
        ELSE
            UPDATE catalog.contacts SET address_id = copy WHERE id = r.id;
        END IF;
    END LOOP;
END $$;

ALTER TABLE catalog.addresses ADD CONSTRAINT addresses_id_organization UNIQUE (id, organization_id);
ALTER TABLE catalog.organizations ADD CONSTRAINT organizations_own_address
    FOREIGN KEY (address_id, id) REFERENCES catalog.addresses (id, organization_id);
ALTER TABLE catalog.venues ADD CONSTRAINT venues_address_of_their_organization
    FOREIGN KEY (address_id, organization_id) REFERENCES catalog.addresses (id, organization_id);
ALTER TABLE catalog.contacts ADD CONSTRAINT contacts_address_of_their_organization
    FOREIGN KEY (address_id, organization_id) REFERENCES catalog.addresses (id, organization_id);
