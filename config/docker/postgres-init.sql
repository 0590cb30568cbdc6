-- The `app` database the development config leases credentials on, with a group role to join.
CREATE DATABASE app;
\connect app
CREATE ROLE app_readonly NOLOGIN;
CREATE TABLE invoices (id int PRIMARY KEY, customer text NOT NULL, amount_cents int NOT NULL);
INSERT INTO invoices VALUES (1, 'ACME', 12000), (2, 'Globex', 4550), (3, 'Initech', 990);
GRANT SELECT ON invoices TO app_readonly;
