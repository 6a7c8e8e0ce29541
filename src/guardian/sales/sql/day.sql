-- One row per day, country, brand, store and currency.
SELECT
  sale_date,
  country_code,
  brand_code,
  store_no,
  currency_code,
  COUNT(*) AS entries,
  COUNT(DISTINCT transaction_no) AS transactions,
  SUM(quantity) AS quantity,
  SUM(net_amount) AS net_amount,
  SUM(vat_amount) AS vat_amount,
  SUM(discount_amount) AS discount_amount
FROM sales_source
WHERE sale_date BETWEEN @start_date AND @end_date
  AND country_code IN UNNEST(@countries)
  AND brand_code IN UNNEST(@brands)
GROUP BY sale_date, country_code, brand_code, store_no, currency_code
