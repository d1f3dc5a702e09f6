"""Names and defaults fixed by HEAR, shared by the preparers (``tasks``) and the task-folder reader
(``evaluation.taskfolder``). It imports nothing, so any module can use it without an import cycle."""

HEAR_SAMPLE_RATES = (16000, 22050, 32000, 44100, 48000)  # the rates a HEAR model may declare (hear_eval.md §1)
METADATA_FILENAME = "task_metadata.json"  # the files of a task folder (hear_eval.md §2)
VOCABULARY_FILENAME = "labelvocabulary.csv"
PREPARE_PENDING = ".prepare-pending.json"  # hear-atst's marker of an unfinished `prepare` run in a task folder

# hear-preprocess's split percentages when a task config has no ``split_percentage`` (hear_preprocess.md §5.1)
TRAIN_PERCENTAGE, VALIDATION_PERCENTAGE, TEST_PERCENTAGE = 80, 10, 10
TRAINVAL_PERCENTAGE = TRAIN_PERCENTAGE + VALIDATION_PERCENTAGE
