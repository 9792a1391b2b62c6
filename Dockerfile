# The image of docker-compose.yaml's Airflow, Spark and MLflow services: Airflow 3.3.2,
# dagfoundry's pinned requirements (pyspark with spark-class and Spark's jars, mlflow,
# the Celery provider), Java 17 (Spark and the embedded Debezium engine), and the project
# itself installed as a package (its `dagfoundry` command and Airflow provider entry point).
FROM apache/airflow:3.3.2-python3.11

USER root
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64

USER airflow
COPY requirements.txt /opt/airflow/requirements.txt
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt

# The project under /opt/airflow/project: the package (plugins/dagfoundry, installed editable,
# so the code that runs is the copy in this image: rebuild after changing it), the DAG loaders,
# include/ (Spark applications, trainers) and the example specs (docker-compose mounts
# ./dag_configs over them, and deploy/compose/cdc_defaults.yaml over their cdc/defaults.yaml).
COPY --chown=airflow:root pyproject.toml README.md /opt/airflow/project/
COPY --chown=airflow:root plugins /opt/airflow/project/plugins
COPY --chown=airflow:root dags /opt/airflow/project/dags
COPY --chown=airflow:root include /opt/airflow/project/include
COPY --chown=airflow:root dag_configs /opt/airflow/project/dag_configs
RUN pip install --no-cache-dir --no-deps -e /opt/airflow/project \
 && mkdir -p /opt/airflow/lake /opt/airflow/cdc-sink /opt/airflow/auth
WORKDIR /opt/airflow/project
