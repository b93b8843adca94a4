-- Topology and customer archive: regions -> feeders -> transformers -> customers, and every
-- meter that measures any of them. Identifiers are text COLLATE "C" everywhere: byte order makes
-- the (meter_id, ts) index on readings cheap to maintain, and one collation on every id column
-- keeps joins between tables legal.

CREATE TABLE regions (
    region_id             text COLLATE "C" PRIMARY KEY,
    name                  text NOT NULL,
    substation_gateway_id text COLLATE "C",
    lat                   double precision CHECK (lat BETWEEN -90 AND 90),
    lon                   double precision CHECK (lon BETWEEN -180 AND 180),
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE meters (
    meter_id       text COLLATE "C" PRIMARY KEY,
    kind           text NOT NULL CHECK (kind IN ('customer', 'balance', 'feeder_head')),
    make           text,
    model          text NOT NULL,
    register_map   text NOT NULL,      -- protocols/maps name the edge decodes it with
    serial         text,
    customer_id    text COLLATE "C",   -- set for kind = 'customer'
    transformer_id text COLLATE "C",   -- customers and balance meters
    feeder_id      text COLLATE "C",   -- feeder heads (and, derived, everyone below)
    gateway_id     text COLLATE "C",
    unit_id        integer CHECK (unit_id BETWEEN 1 AND 247),
    phases         smallint CHECK (phases IN (1, 3)),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE feeders (
    feeder_id     text COLLATE "C" PRIMARY KEY,
    region_id     text COLLATE "C" NOT NULL REFERENCES regions,
    -- feeders and meters point at each other; deferred so one transaction can insert both
    head_meter_id text COLLATE "C" REFERENCES meters DEFERRABLE INITIALLY DEFERRED,
    length_km     double precision CHECK (length_km >= 0),
    rural         boolean NOT NULL DEFAULT false,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transformers (
    transformer_id   text COLLATE "C" PRIMARY KEY,
    feeder_id        text COLLATE "C" NOT NULL REFERENCES feeders,
    gateway_id       text COLLATE "C",
    balance_meter_id text COLLATE "C" REFERENCES meters DEFERRABLE INITIALLY DEFERRED,
    rating_kva       double precision NOT NULL CHECK (rating_kva > 0),
    no_load_loss_w   double precision NOT NULL CHECK (no_load_loss_w >= 0),
    load_loss_w      double precision NOT NULL CHECK (load_loss_w >= 0),  -- at rated current
    distance_km      double precision CHECK (distance_km >= 0),
    lat              double precision CHECK (lat BETWEEN -90 AND 90),
    lon              double precision CHECK (lon BETWEEN -180 AND 180),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE customers (
    customer_id    text COLLATE "C" PRIMARY KEY,
    class          text NOT NULL,          -- residential / commercial / industrial / ...
    tariff_per_kwh numeric(12, 6) NOT NULL CHECK (tariff_per_kwh >= 0),
    currency       text NOT NULL DEFAULT 'EUR',
    contract_kva   double precision CHECK (contract_kva > 0),  -- NULL: not in the archive
    is_special     boolean NOT NULL DEFAULT false,              -- large or special load
    has_pv         boolean NOT NULL DEFAULT false,
    pv_kwp         double precision NOT NULL DEFAULT 0 CHECK (pv_kwp >= 0),
    transformer_id text COLLATE "C" NOT NULL REFERENCES transformers,
    phases         smallint CHECK (phases IN (1, 3)),
    phase          smallint CHECK (phase BETWEEN 0 AND 2),
    service_m      double precision CHECK (service_m >= 0),
    lat            double precision CHECK (lat BETWEEN -90 AND 90),
    lon            double precision CHECK (lon BETWEEN -180 AND 180),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE meters
    ADD FOREIGN KEY (customer_id) REFERENCES customers DEFERRABLE INITIALLY DEFERRED,
    ADD FOREIGN KEY (transformer_id) REFERENCES transformers DEFERRABLE INITIALLY DEFERRED,
    ADD FOREIGN KEY (feeder_id) REFERENCES feeders DEFERRABLE INITIALLY DEFERRED;
CREATE INDEX meters_transformer_idx ON meters (transformer_id);
CREATE INDEX customers_transformer_idx ON customers (transformer_id);

-- Which physical meter measured which point, and when: a replaced meter starts a new register
-- series, so analytics must not subtract across the replacement.
CREATE TABLE meter_installations (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id          text COLLATE "C" NOT NULL REFERENCES meters,
    installed_on      date NOT NULL,
    removed_on        date CHECK (removed_on IS NULL OR removed_on >= installed_on),
    replaces_meter_id text COLLATE "C" REFERENCES meters,
    reason            text,
    UNIQUE (meter_id, installed_on)
);
