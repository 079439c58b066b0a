-- Version 29: staff find a buyer's order by e-mail or payment reference (admin API,
-- GET /v1/organizations/{org}/orders) without reading every order of a record-size raffle.
-- Validation numbers are indexed already (unique per raffle); names and phone numbers are
-- matched in part and read within the organisation's raffles.
CREATE INDEX orders_customer_email ON sales.orders (lower(customer_email)) WHERE customer_email IS NOT NULL;
CREATE INDEX orders_payment_reference ON sales.orders (payment_reference) WHERE payment_reference IS NOT NULL;
