-- One database per service; both owned by the compose user.
CREATE DATABASE mlflow;
CREATE DATABASE prefect;
