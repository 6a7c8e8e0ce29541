-- One row per sales entry (LS Central "Trans. Sales Entry" grain).
-- Reads only the columns it returns; the filter on sale_date prunes partitions and the
-- filters on country_code and brand_code prune clustered blocks.
SELECT
  entry_no,
  transaction_no,
  store_no,
  pos_terminal_no,
  sale_date,
  sale_time,
  country_code,
  brand_code,
  item_no,
  entry_type,
  quantity,
  net_amount,
  vat_amount,
  discount_amount,
  currency_code
FROM sales_source
WHERE sale_date BETWEEN @start_date AND @end_date
  AND country_code IN UNNEST(@countries)
  AND brand_code IN UNNEST(@brands)
