-- Runs once, when the PostgreSQL volume is first initialised: the Guardian store's own database
-- beside Airflow's metadata database (same server, same role).
CREATE DATABASE guardian;
