-- A product's seats in number order (issue 12): the pages of `GET /v1/seats?product=…` and
-- `allot seat list --product` seek here and read one page, instead of sorting the product's
-- seats (or walking the tenant's) for every page. Claims change `holder_id`, not these columns,
-- so the hot path does not maintain it.
CREATE INDEX seats_by_product_number ON seats (tenant_id, product_id, number);
