# The one image every Airflow service in docker-compose.yaml runs.
# It carries the dependencies only; dags/, include/, plugins/ and data_quality/ are
# mounted by the compose file at /opt/airflow/project (see docs/operations.md).
FROM apache/airflow:3.3.2-python3.11

# The base image's Python environment belongs to the airflow user; pip as root
# would install where Airflow does not look.
USER airflow
COPY --chown=airflow:0 requirements.txt /requirements.txt
# Naming the base image's own Airflow version makes pip fail the build instead of
# silently up- or downgrading Airflow if requirements.txt ever drifts from the tag
# (tests/deploy/test_compose.py checks the same thing without a build).
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /requirements.txt

ENV PYTHONPATH=/opt/airflow/project \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/airflow/project/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/airflow/project/plugins \
    LIVING_REVIEW_DATA_DIR=/opt/airflow/data
